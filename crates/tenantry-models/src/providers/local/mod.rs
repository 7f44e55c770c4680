//! The `local` provider: a sentence-transformer model run in-process, for embeddings only.
//!
//! It loads a sentence-transformers directory (`config.json`, `tokenizer.json` of the
//! WordPiece kind, BERT weights in `model.safetensors`, and optionally
//! `sentence_bert_config.json` for the sequence length) once at start-up, and embeds with its
//! own BERT forward pass (`bert`), mean pooling and unit normalisation: no network, no native
//! library. Chat is not offered. Work runs on blocking threads, texts split across at most
//! `threads` of them, so the async runtime never stalls on a long batch.

mod bert;
mod safetensors;
mod wordpiece;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::config::{ConfigError, LocalConfig, invalid};
use crate::error::ProviderError;
use crate::wire::{
    Embedding, EmbeddingInput, EmbeddingVector, EmbeddingsRequest, EmbeddingsResponse,
    EmbeddingsUsage, Extra,
};

use bert::{Bert, Shape};
use wordpiece::WordPiece;

/// The most texts one embeddings call may carry.
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f32,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
}

fn two() -> usize {
    2
}

fn eps() -> f32 {
    1e-12
}

#[derive(Debug, Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

#[derive(Debug)]
struct Model {
    tokenizer: WordPiece,
    bert: Bert,
    max_len: usize,
    dims: usize,
}

/// A loaded local model.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    model: Arc<Model>,
    threads: usize,
}

impl LocalProvider {
    /// Loads the model directory of `[models.providers.NAME]` (`key`), from `path` or the
    /// environment variable `path_env`.
    pub fn new(
        key: &str,
        c: &LocalConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let dir = match (&c.path, &c.path_env) {
            (Some(p), None) => p.clone(),
            (None, Some(var)) => match env(var) {
                Some(v) if !v.trim().is_empty() => PathBuf::from(v.trim()),
                Some(_) | None => {
                    return Err(invalid(
                        format!("{key}.path_env"),
                        format!(
                            "environment variable {var} is not set; export it or set `{key}.path`"
                        ),
                    ));
                }
            },
            _ => {
                return Err(invalid(
                    format!("{key}.path"),
                    "set either `path` (the model directory) or `path_env`, exactly one",
                ));
            }
        };
        let model = Self::load(&dir, c.max_seq_length)
            .map_err(|e| invalid(format!("{key}.path"), format!("{}: {e}", dir.display())))?;
        let threads = c.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        Ok(Self {
            model: Arc::new(model),
            threads: threads.clamp(1, 64),
        })
    }

    fn load(dir: &Path, max_seq: Option<usize>) -> Result<Model, String> {
        let read =
            |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("reading {name}: {e}"));
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| format!("config.json: {e}"))?;
        if config.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(format!(
                "config.json: model type {:?} is not bert",
                config.model_type
            ));
        }
        if config.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            return Err(format!(
                "config.json: activation {:?} is not gelu",
                config.hidden_act
            ));
        }
        let tokenizer_text = String::from_utf8(read("tokenizer.json")?)
            .map_err(|_| "tokenizer.json is not UTF-8".to_owned())?;
        let tokenizer = WordPiece::from_json(&tokenizer_text)?;
        let tensors = safetensors::Tensors::parse(read("model.safetensors")?)?;
        let shape = Shape {
            vocab: config.vocab_size,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            intermediate: config.intermediate_size,
            positions: config.max_position_embeddings,
            types: config.type_vocab_size,
            eps: config.layer_norm_eps,
        };
        let bert = Bert::load(&tensors, shape)?;
        let sentence_max = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<SentenceConfig>(&b).ok())
            .and_then(|c| c.max_seq_length);
        let max_len = max_seq
            .or(sentence_max)
            .unwrap_or(bert.max_positions())
            .clamp(2, bert.max_positions());
        Ok(Model {
            tokenizer,
            bert,
            max_len,
            dims: config.hidden_size,
        })
    }

    /// The embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.model.dims
    }

    /// Embeds `texts` on this thread, splitting them over up to `threads` scoped threads.
    /// Answers the vectors and the number of tokens read.
    pub fn embed_blocking(&self, texts: &[String]) -> (Vec<Vec<f32>>, u64) {
        let m = &self.model;
        let one = |t: &String| {
            let ids = m.tokenizer.encode(t, m.max_len);
            (m.bert.embed(&ids), ids.len() as u64)
        };
        let per = texts.len().div_ceil(self.threads.min(texts.len().max(1)));
        let results: Vec<(Vec<f32>, u64)> = if self.threads <= 1 || texts.len() <= 1 {
            texts.iter().map(one).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = texts
                    .chunks(per.max(1))
                    .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        let tokens = results.iter().map(|r| r.1).sum();
        (results.into_iter().map(|r| r.0).collect(), tokens)
    }

    pub async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        if matches!(
            req.input,
            EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_)
        ) {
            return Err(ProviderError::InvalidRequest(
                "the local model takes text input, not token ids".into(),
            ));
        }
        if req
            .dimensions
            .is_some_and(|d| d as usize != self.model.dims)
        {
            return Err(ProviderError::InvalidRequest(format!(
                "this model's embeddings have {} dimensions",
                self.model.dims
            )));
        }
        let texts = req.input.texts();
        if texts.len() > MAX_INPUTS {
            return Err(ProviderError::InvalidRequest(format!(
                "at most {MAX_INPUTS} inputs per call"
            )));
        }
        let this = self.clone();
        let expected = texts.len();
        let (vectors, tokens) = tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| ProviderError::malformed(format!("the local model failed: {e}")))?;
        if vectors.len() != expected {
            return Err(ProviderError::malformed("the local model lost an input"));
        }
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| Embedding {
                object: "embedding".into(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                embedding: if req.wants_base64() {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    EmbeddingVector::Float(v)
                },
            })
            .collect();
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: req.model.clone(),
            usage: EmbeddingsUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
            extra: Extra::new(),
        })
    }
}
