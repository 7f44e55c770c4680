//! A small client of the control plane: finds the server and the operator key, sends JSON and
//! turns the API's error shape into a readable message.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use tenantry_server::Config;

use crate::cli::{DEFAULT_DIR, Target};

pub fn default_config_path() -> PathBuf {
    Path::new(DEFAULT_DIR).join(tenantry_server::statedir::CONFIG_FILE)
}

pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(default_config_path);
    Config::load(&path, &|k| std::env::var(k).ok()).map_err(|e| anyhow!("{e}"))
}

#[derive(Debug)]
pub struct AdminClient {
    url: String,
    key: String,
    http: reqwest::Client,
}

pub fn install_crypto() {
    // Ignoring the result: another part of the process may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl AdminClient {
    pub fn new(target: &Target) -> Result<Self> {
        install_crypto();
        let (url, key) = match (&target.url, &target.admin_key) {
            (Some(url), Some(key)) => (url.clone(), key.clone()),
            (url, key) => {
                let config = load_config(target.config.as_deref()).context(
                    "cannot find the server: pass --config DIR/tenantry.toml, or --url and --admin-key",
                )?;
                let key = match key {
                    Some(k) => k.clone(),
                    None => config.admin_key().map_err(|e| anyhow!("{e}"))?,
                };
                (url.clone().unwrap_or_else(|| config.public_url()), key)
            }
        };
        Self::with_key(&url, key)
    }

    /// A client of `url` that sends `key` (e.g. a tenant's API key, for tenant endpoints).
    pub fn with_key(url: &str, key: String) -> Result<Self> {
        install_crypto();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            key,
            http,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{}", self.url, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .context("cannot read the server's answer")?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server's answer is not JSON");
        }
        Err(refusal(status, &text))
    }

    /// A GET whose answer is read as it comes (an event stream), with no deadline: it lasts
    /// as long as the server sends.
    pub async fn open_stream(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.url, path);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        let resp = http
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(refusal(status, &text))
    }

    fn unreachable(&self, url: &str, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(
                "cannot reach the server at {}: is `tenantry serve` running?",
                self.url
            )
        } else {
            anyhow!("request to {url} failed: {e}")
        }
    }

    /// Sends a request and returns the status and the JSON body (`Null` when empty), whatever
    /// the status: for commands that show an error's details.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.url, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .context("cannot read the server's answer")?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.trim().to_owned()))
        };
        Ok((status, value))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Rolls a versioned document at `base` (a policy set's or a guardrail profile's scope)
    /// back: to `version` when given, otherwise to the version before the active one.
    pub async fn roll_back(&self, base: &str, version: Option<i64>) -> Result<Value> {
        match version {
            Some(v) => {
                let body = serde_json::json!({ "version": v });
                self.call(
                    reqwest::Method::POST,
                    &format!("{base}/activate"),
                    Some(&body),
                )
                .await
            }
            None => {
                self.call(reqwest::Method::POST, &format!("{base}/rollback"), None)
                    .await
            }
        }
    }
}

/// The error of a refused request: the API's code and message when it sent its error shape.
fn refusal(status: reqwest::StatusCode, text: &str) -> anyhow::Error {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.pointer("/error/code").is_some() => {
            let code = v
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("");
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            anyhow!("{code} ({}): {msg}", status.as_u16())
        }
        Ok(_) | Err(_) => anyhow!("the server answered {status}: {}", text.trim()),
    }
}
