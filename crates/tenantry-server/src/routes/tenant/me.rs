//! `GET /v1/me`: who the caller is, as the platform sees it.

use crate::auth::TenantCaller;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/me", get(me))
}
async fn me(TenantCaller(ctx): TenantCaller) -> Json<Value> {
    Json(json!({
        "principal": {
            "kind": "tenant_user",
            "tenant_id": ctx.tenant_id,
            "user_id": ctx.user_id,
            "roles": ctx.roles,
            "credential": ctx.credential,
        },
        "tenant": ctx,
    }))
}
