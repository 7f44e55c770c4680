//! Bedrock's knowledge-base Retrieve (`POST /knowledgebases/{knowledgeBaseId}/retrieve`), with
//! the request, response and error shapes of botocore's `bedrock-agent-runtime` model, so
//! boto3's client and LangChain's Bedrock knowledge-base retriever work by endpoint URL.
//!
//! The caller is authenticated like every tenant route (the common extraction), and the tenant
//! is its credential's: the base must be one that tenant reaches, and only that tenant's chunks
//! are searched. Errors are AWS-shaped: the status of the modelled exception, its name in
//! `x-amzn-ErrorType`, and `{"message": ...}`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tenantry_core::ErrorCode;
use tenantry_memory::knowledge::Filter;
use tenantry_memory::search::SearchMode;

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, current_request_id};
use crate::extract::ApiPath;
use crate::knowledge::retrieve::Query;
use crate::routes::tenant::knowledge::tier_of;
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/knowledgebases/{knowledge_base_id}/retrieve",
            post(retrieve),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
        .layer(axum::middleware::from_fn(aws_errors))
}

/// Reshapes an error answered before the handler (authentication, admission) into the AWS
/// shape, so an AWS client classifies it; the handler's own errors already are.
async fn aws_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let Some(code) = response.extensions().get::<ErrorCode>().copied() else {
        return response;
    };
    if response.headers().contains_key("x-amzn-errortype") {
        return response;
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| code.as_str().to_owned());
    let mut e = ApiError::new(code, message);
    e.retry_after = retry_after;
    AwsError(e).into_response()
}

/// An error in the AWS REST-JSON shape.
#[derive(Debug)]
pub struct AwsError(pub ApiError);

impl From<ApiError> for AwsError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

/// The modelled exception (and its status) of each of our codes.
fn exception(code: ErrorCode) -> (&'static str, u16) {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidJson
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::MethodNotAllowed
        | ErrorCode::GuardrailBlocked => ("ValidationException", 400),
        ErrorCode::Unauthenticated
        | ErrorCode::InvalidToken
        | ErrorCode::Forbidden
        | ErrorCode::ModelNotEntitled
        | ErrorCode::TenantSuspended => ("AccessDeniedException", 403),
        ErrorCode::NotFound => ("ResourceNotFoundException", 404),
        ErrorCode::Conflict => ("ConflictException", 409),
        ErrorCode::RateLimited => ("ThrottlingException", 429),
        ErrorCode::BudgetExceeded | ErrorCode::StorageExceeded => {
            ("ServiceQuotaExceededException", 400)
        }
        ErrorCode::UpstreamError
        | ErrorCode::AgentUnavailable
        | ErrorCode::AgentError
        | ErrorCode::SandboxOom => ("DependencyFailedException", 424),
        ErrorCode::Unavailable | ErrorCode::Internal => ("InternalServerException", 500),
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let (name, status) = exception(self.0.code);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            axum::Json(json!({ "message": self.0.message, "__type": name })),
        )
            .into_response();
        response.extensions_mut().insert(self.0.code);
        let headers = response.headers_mut();
        headers.insert("x-amzn-errortype", HeaderValue::from_static(name));
        if let Ok(v) = HeaderValue::from_str(&current_request_id()) {
            headers.insert("x-amzn-requestid", v);
        }
        if let Some(secs) = self.0.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert("retry-after", v);
        }
        response
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrieveRequest {
    retrieval_query: RetrievalQuery,
    #[serde(default)]
    retrieval_configuration: Option<RetrievalConfiguration>,
    #[serde(default)]
    guardrail_configuration: Option<Value>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrievalQuery {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrievalConfiguration {
    vector_search_configuration: VectorSearchConfiguration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorSearchConfiguration {
    #[serde(default)]
    number_of_results: Option<usize>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    override_search_type: Option<String>,
    #[serde(default)]
    reranking_configuration: Option<Value>,
    #[serde(default)]
    implicit_filter_configuration: Option<Value>,
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError(ApiError::invalid(message))
}

async fn retrieve(
    State(state): State<AppState>,
    caller: Result<TenantCaller, ApiError>,
    tier: Result<CallerTier, ApiError>,
    ApiPath(base): ApiPath<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, AwsError> {
    let TenantCaller(ctx) = caller?;
    let CallerTier(tier) = tier?;
    let req: RetrieveRequest = serde_json::from_slice(&body)
        .map_err(|e| validation(format!("the request does not match Retrieve: {e}")))?;
    if req.guardrail_configuration.is_some() {
        return Err(validation("guardrailConfiguration is not supported here"));
    }
    if req.next_token.is_some() {
        return Err(validation(
            "all results come in one page; nextToken is not taken",
        ));
    }
    if req
        .retrieval_query
        .kind
        .as_deref()
        .is_some_and(|k| k != "TEXT")
    {
        return Err(validation("only TEXT queries are supported"));
    }
    let text = req
        .retrieval_query
        .text
        .ok_or_else(|| validation("retrievalQuery.text is required"))?;
    if text.len() > 20_000 {
        return Err(validation(
            "retrievalQuery.text is at most 20,000 characters",
        ));
    }
    let vsc = req
        .retrieval_configuration
        .map(|c| c.vector_search_configuration);
    let (top_k, filter, mode) = match vsc {
        Some(v) => {
            if v.reranking_configuration.is_some() || v.implicit_filter_configuration.is_some() {
                return Err(validation(
                    "rerankingConfiguration and implicitFilterConfiguration are not supported",
                ));
            }
            let mode = match v.override_search_type.as_deref() {
                None => None,
                Some("HYBRID") => Some(SearchMode::Hybrid),
                Some("SEMANTIC") => Some(SearchMode::Vector),
                Some(other) => {
                    return Err(validation(format!(
                        "overrideSearchType {other:?} is not HYBRID or SEMANTIC"
                    )));
                }
            };
            let filter = v
                .filter
                .as_ref()
                .map(Filter::from_json)
                .transpose()
                .map_err(|e| validation(e.to_string()))?;
            (v.number_of_results.unwrap_or(5), filter, mode)
        }
        None => (5, None, None),
    };
    if !(1..=100).contains(&top_k) {
        return Err(validation("numberOfResults must be between 1 and 100"));
    }
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    let tier = tier_of(&ctx, tier)?;
    let answer = state
        .knowledge
        .retrieve(
            &state,
            &ctx,
            &tier,
            &base,
            Query {
                text,
                top_k,
                filter,
                mode,
            },
        )
        .await?;
    let results: Vec<Value> = answer
        .results
        .into_iter()
        .map(|r| {
            let mut metadata: Map<String, Value> = r.metadata;
            metadata.insert("x-amz-bedrock-kb-chunk-id".into(), json!(r.chunk_id));
            metadata.insert("x-amz-bedrock-kb-source-uri".into(), json!(r.document_id));
            metadata.insert("x-tenantry-heading-path".into(), json!(r.heading_path));
            metadata.insert("x-tenantry-search-mode".into(), json!(answer.mode.as_str()));
            json!({
                "content": {"type": "TEXT", "text": r.text},
                "location": {"type": "CUSTOM", "customDocumentLocation": {"id": r.document_id}},
                "metadata": metadata,
                "score": r.score,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "retrievalResults": results })))
}
