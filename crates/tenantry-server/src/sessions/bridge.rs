//! The platform bridge of each sandbox: the sandbox's secret stands for its bound session's
//! workload token, and for nothing before it is bound. It is the `OPENAI_API_KEY` (a bearer
//! credential) and the `AWS_SECRET_ACCESS_KEY` (SigV4, with the key id
//! `aws::keys::SANDBOX_ACCESS_KEY_ID`) of the sandbox.

use super::*;
use crate::error::ApiError;

/// Who a bound sandbox acts for: set when a sandbox is handed to a session.
#[derive(Debug, Default)]
pub(super) struct Binding {
    pub(super) token: Option<String>,
}

/// On a sandbox's bridge socket: the sandbox's secret becomes the bound session's workload
/// token; any other credential is passed on unchanged (and verified as usual). A SigV4
/// signature needs the body, so it is verified later, by `aws::auth::verify_signed`, with the
/// secret and token this leaves in the request.
pub(super) async fn bridge_auth(
    axum::extract::State((secret, binding)): axum::extract::State<(String, Arc<Mutex<Binding>>)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let signed = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::aws::sigv4::is_sigv4);
    if signed {
        let token = binding.lock().ok().and_then(|b| b.token.clone());
        req.extensions_mut()
            .insert(crate::aws::BridgeSigner { secret, token });
        return next.run(req).await;
    }
    if presented.as_deref() == Some(secret.as_str()) {
        let token = binding.lock().ok().and_then(|b| b.token.clone());
        match token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            Some(v) => {
                req.headers_mut()
                    .insert(axum::http::header::AUTHORIZATION, v);
            }
            None => {
                return ApiError::from(SessionError::NotBound).into_response();
            }
        }
    }
    next.run(req).await
}
