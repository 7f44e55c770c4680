//! The seam to whatever turns text into vectors: the model gateway (an OpenAI-compatible
//! embeddings endpoint, or the in-process `local` provider), behind one trait so knowledge
//! bases and memory records embed the same way and tests can stand in a fake.
//!
//! An implementation is bound to one caller (the server's meters each call to the caller's
//! tenant); this module never chooses a model or a tenant itself.

use std::future::Future;
use std::pin::Pin;

/// Why embedding failed. The caller decides how to answer (the server maps it to its own
/// error with the gateway's classification kept in `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The gateway refused or the upstream failed; the message is the gateway's.
    #[error("embedding failed: {message}")]
    Upstream { code: String, message: String },
    /// The answer does not fit the request (wrong count, wrong or mixed dimensions).
    #[error("the embedder answered badly: {0}")]
    Malformed(String),
}

pub type EmbedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Turns texts into vectors, one per text, in order, all of one dimension.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// The model's name as the gateway knows it (stored beside each vector).
    fn model(&self) -> &str;
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
}

/// Scales `v` to unit length (a zero vector stays zero), so cosine similarity is a dot product.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Checks an embedder's answer: one vector per text, all of one non-zero dimension.
pub fn check_answer(texts: usize, vectors: &[Vec<f32>]) -> Result<usize, EmbedError> {
    if vectors.len() != texts {
        return Err(EmbedError::Malformed(format!(
            "{} vectors for {texts} texts",
            vectors.len()
        )));
    }
    let dims = vectors.first().map_or(0, Vec::len);
    if vectors.iter().any(|v| v.len() != dims) || (texts > 0 && dims == 0) {
        return Err(EmbedError::Malformed(
            "vectors of different or zero dimension".into(),
        ));
    }
    Ok(dims)
}
