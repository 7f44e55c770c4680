//! Tenantry's guardrails: checks on the text of model and tool traffic, per tier and tenant.
//!
//! A [`Profile`] (the operator's document, versioned in the store like policy sets) lists
//! checks, each with an [`Action`] (`block`, `mask`, `log`) and the [`Stage`]s it runs at
//! (model input, model output, tool call input, tool result). [`Guard`] is a profile compiled
//! for scanning; [`StreamScanner`] applies one to a streamed answer without waiting for its end.
//!
//! The checks: sensitive information with typed masking (`sensitive`), denied topics and word
//! filters insensitive to case, accents and look-alike letters (`words`, `normalize`),
//! prompt-attack heuristics (`attack`), other tenants' protected identifiers (`leak`), and a
//! model judge or webhook (`remote`, whose I/O the server supplies).
//!
//! This crate must never do network or store I/O itself, never put matched text into a
//! decision (categories only), and never tell one tenant anything about another's
//! identifiers beyond "this span is not yours to see".

#![forbid(unsafe_code)]

pub mod attack;
mod engine;
mod json;
mod leak;
pub mod normalize;
mod profile;
mod remote;
pub mod sensitive;
mod stream;
mod words;

pub use engine::{Context, Found, Guard, Outcome, Verdict, merged};
pub use json::ValueVerdict;
pub use leak::LeakIndex;
pub use profile::{
    Action, Check, CheckKind, CustomPattern, Entity, FailMode, MAX_CHECKS, MAX_PROFILE_BYTES,
    Profile, ProfileError, Stage, Topic,
};
pub use remote::{JUDGE_INSTRUCTIONS, Remote, RemoteError, RemoteFuture, read_judgement};
pub use stream::{Step, StreamScanner};
pub use words::PhraseSet;
