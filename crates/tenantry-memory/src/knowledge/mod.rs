//! Knowledge bases (RAG), the rules without I/O: ids (`ids`), turning a document of plain
//! text, Markdown or HTML into sections under their headings (`parse`), cutting sections into
//! chunks that carry their heading path (`chunk`), and the metadata filters of a retrieval
//! (`filter`, Bedrock's `RetrievalFilter`).
//!
//! A knowledge base is siloed (owned by one tenant) or pooled (created by the operator, each
//! tenant's documents visible only to that tenant). Either way a chunk belongs to exactly one
//! tenant, and the tenant of a retrieval comes from the caller's credential: no filter, id or
//! metadata key a caller sends can name another tenant. PDF is not ingested (no maintained
//! pure-Rust parser fits cheaply); callers send its text.

pub mod chunk;
pub mod filter;
pub mod ids;
pub mod parse;

pub use chunk::{Chunk, ChunkOptions, chunk_sections, search_text};
pub use filter::{Filter, FilterError};
pub use ids::{DocumentId, KnowledgeBaseId, chunk_id, split_chunk_id};
pub use parse::{ContentType, Section, parse};
