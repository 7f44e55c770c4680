//! The I/O of the remote guardrail checks: the model judge through a provider of the model
//! gateway (any kind: OpenAI-compatible, Anthropic, Bedrock, mock), and webhooks over HTTP.
//! Timeouts are the checks' own (applied by `tenantry-guardrails`); this module adds none but
//! the HTTP client's connect timeout.

use std::time::Duration;

use serde_json::{Value, json};
use tenantry_guardrails::{Remote, RemoteError, RemoteFuture};
use tenantry_models::wire::ChatRequest;

use crate::models::Gateway;

/// Largest webhook answer read, in bytes.
const MAX_WEBHOOK_ANSWER: usize = 64 * 1024;

#[derive(Debug)]
pub struct ServerRemote {
    gateway: Gateway,
    http: Option<reqwest::Client>,
}

impl ServerRemote {
    pub fn new(gateway: Gateway) -> Self {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot build the guardrail webhook client"))
            .ok();
        Self { gateway, http }
    }
}

impl Remote for ServerRemote {
    fn judge<'a>(
        &'a self,
        provider: &'a str,
        model: &'a str,
        instructions: &'a str,
        text: &'a str,
    ) -> RemoteFuture<'a, String> {
        Box::pin(async move {
            let router = self.gateway.router();
            let p = router
                .provider(provider)
                .ok_or_else(|| format!("no model provider {provider:?} is configured"))?
                .clone();
            let request: ChatRequest = serde_json::from_value(json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": instructions},
                    {"role": "user", "content": text},
                ],
                "max_tokens": 16,
                "temperature": 0.0,
            }))
            .map_err(|e| e.to_string())?;
            let answer = p.chat(&request).await.map_err(|e| e.to_string())?;
            answer
                .choices
                .first()
                .map(|c| c.message.text())
                .ok_or_else(|| RemoteError::Call("the judge answered no choice".to_owned()))
        })
    }

    fn webhook<'a>(&'a self, url: &'a str, body: Value) -> RemoteFuture<'a, Value> {
        Box::pin(async move {
            let http = self
                .http
                .as_ref()
                .ok_or_else(|| "no HTTP client".to_owned())?;
            let response = http
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            let status = response.status();
            if !status.is_success() {
                return Err(RemoteError::Call(format!(
                    "the webhook answered HTTP {}",
                    status.as_u16()
                )));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if bytes.len() > MAX_WEBHOOK_ANSWER {
                return Err(RemoteError::Call(
                    "the webhook's answer is too large".into(),
                ));
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| RemoteError::Call(format!("the webhook's answer: {e}")))
        })
    }
}
