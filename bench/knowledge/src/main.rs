//! Knowledge retrieval benchmark on the pooled embedded store (SQLite).
//!
//! 1. Load: `--tenants` tenants (50) with `--records` chunks each (20,000) in one pooled base,
//!    written through the store's own `put_document` (20 chunks per document), with synthetic
//!    text (Zipf-distributed words) and synthetic unit vectors of `--dims` (384) components:
//!    embedding a million chunks with the real model would take hours here, and latency does
//!    not depend on what the vectors mean.
//! 2. Retrieval, one query at a time, random tenant and 3 random content words, three ways on
//!    the same data, in an order that rotates query by query: SQLite FTS5 alone (one MATCH with the tenant's scope token, top 5 with
//!    their text), our full-text retrieval (the store's scoped FTS5 query for 40 candidates and
//!    their chunks), and our hybrid retrieval (that, the generation check, exact vector search
//!    over the tenant's 20,000 vectors in the in-process index, reciprocal-rank fusion and the
//!    chunks of the fused candidates): the steps of `Knowledge::retrieve` without HTTP. The
//!    query's embedding is a model call and is measured separately (step 3).
//! 3. Ingestion with the real local embedder (`--model`, all-MiniLM-L6-v2): chunks of the
//!    labelled corpus embedded and stored, in chunks per second; and one query's embedding.
//!
//! The generated database lives in a temporary directory (or `--dir`) and is never committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tenantry_core::{
    SystemGrant, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus, TenantUid, TierName,
};
use tenantry_memory::search::{
    PartitionKey, RRF_K, VectorIndex, query_terms, reciprocal_rank_fusion,
};
use tenantry_store::{DocumentRecord, KnowledgeBaseRecord, NewChunk, Store};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    #[arg(long, default_value_t = 384)]
    dims: usize,
    /// Queries per method.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Words per synthetic chunk.
    #[arg(long, default_value_t = 40)]
    words: usize,
    /// Where the database goes (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// The sentence-transformers directory for the ingestion phase (skipped without it).
    #[arg(long, env = "TENANTRY_LOCAL_EMBEDDER_MODEL")]
    model: Option<std::path::PathBuf>,
    /// Corpus chunks embedded in the ingestion phase (the corpus, repeated).
    #[arg(long, default_value_t = 660)]
    ingest_chunks: usize,
}

const BASE: &str = "KBBENCH001";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A vocabulary: the corpus's words, then synthetic ones, drawn with Zipf-like frequencies.
struct Words {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Words {
    fn new() -> Self {
        let mut words: Vec<String> = Vec::new();
        let mut seen: std::collections::HashSet<String> = Default::default();
        for line in include_str!("../../../crates/tenantry-memory/tests/corpus/chunks.txt").lines()
        {
            for w in line
                .rsplit('|')
                .next()
                .unwrap_or("")
                .split(|c: char| !c.is_alphanumeric())
            {
                let w = w.to_lowercase();
                if w.len() > 2 && seen.insert(w.clone()) {
                    words.push(w);
                }
            }
        }
        let syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "ze", "pi", "su"];
        let mut i = 0usize;
        while words.len() < 20_000 {
            // Five syllables of ten: 100,000 distinct words, more than the 20,000 needed.
            let w: String = (0..5)
                .map(|k| syllables[(i / 10usize.pow(k)) % 10])
                .collect();
            i += 1;
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut cdf = Vec::with_capacity(words.len());
        let mut acc = 0.0;
        for r in 1..=words.len() {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        Self { words, cdf }
    }

    fn rank(&self, rng: &mut Rng) -> usize {
        let x = rng.unit() * self.cdf[self.cdf.len() - 1];
        self.cdf
            .partition_point(|c| *c < x)
            .min(self.words.len() - 1)
    }

    fn draw(&self, rng: &mut Rng) -> &str {
        &self.words[self.rank(rng)]
    }

    /// A content word: not among the 100 commonest.
    fn query_word(&self, rng: &mut Rng) -> &str {
        loop {
            let r = self.rank(rng);
            if r >= 100 {
                return &self.words[r];
            }
        }
    }
}

fn vector(rng: &mut Rng, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
    tenantry_memory::search::normalize(&mut v);
    v
}

fn tenant(i: usize) -> Tenant {
    Tenant {
        id: TenantId::new(format!("bench-{i:03}")).expect("tenant id"),
        uid: TenantUid::generate(),
        name: format!("bench {i}"),
        tier: TierName::new("bench").expect("tier"),
        status: TenantStatus::Active,
        isolation: TenantIsolation::default(),
        region: "eu".into(),
        features: Default::default(),
        entitlements: serde_json::Map::new(),
        created_at: 1,
        updated_at: 1,
    }
}

fn scope(i: usize) -> TenantScope {
    TenantScope::for_operator(SystemGrant::at_start(), tenant(i).id)
}

fn doc(id: String, chunks: i64) -> DocumentRecord {
    DocumentRecord {
        base_id: BASE.into(),
        id,
        title: "bench".into(),
        content_type: "text".into(),
        metadata: serde_json::Map::new(),
        owner_user: None,
        chunk_count: chunks,
        bytes: 0,
        created_at: 1,
        updated_at: 1,
    }
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort();
        let i = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1;
        s[i].as_secs_f64() * 1000.0
    }

    fn line(&self, name: &str) -> String {
        format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} |",
            self.pct(0.50),
            self.pct(0.99),
            self.pct(0.999),
            self.pct(1.0)
        )
    }
}

async fn load(store: &Store, args: &Args) -> Result<()> {
    let tier = serde_json::from_value(serde_json::json!({"name": "bench"}))?;
    store.put_tier(&tier).await?;
    store
        .create_knowledge_base(&KnowledgeBaseRecord {
            id: BASE.into(),
            name: "pooled bench base".into(),
            description: String::new(),
            owner: None,
            created_at: 1,
        })
        .await?;
    let words = Words::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let per_doc = 20usize;
    let started = Instant::now();
    for t in 0..args.tenants {
        store.create_tenant(&tenant(t)).await?;
        let s = scope(t);
        for d in 0..args.records.div_ceil(per_doc) {
            let n = per_doc.min(args.records - d * per_doc);
            let chunks: Vec<NewChunk> = (0..n)
                .map(|i| {
                    let text: Vec<&str> = (0..args.words).map(|_| words.draw(&mut rng)).collect();
                    let text = text.join(" ");
                    NewChunk {
                        seq: i as i64,
                        heading_path: vec![],
                        search_text: text.clone(),
                        text,
                        embedding: Some(vector(&mut rng, args.dims)),
                        embed_model: Some("synthetic".into()),
                    }
                })
                .collect();
            store
                .put_document(&s, &doc(format!("d{d}"), n as i64), &chunks)
                .await?;
        }
        eprintln!(
            "loaded tenant {}/{} ({:.0} s)",
            t + 1,
            args.tenants,
            started.elapsed().as_secs_f64()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "load: {} chunks in {secs:.0} s ({:.0} chunks/s, synthetic vectors, store writes only)",
        args.tenants * args.records,
        (args.tenants * args.records) as f64 / secs
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("knowledge-bench.db");
    let fresh = !path.exists();
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .context("opening the store")?;
    if fresh {
        load(&store, &args).await?;
    } else {
        println!("reusing {}", path.display());
    }

    // The in-process index, built from the store as a replica does on first use.
    let index = VectorIndex::new();
    let started = Instant::now();
    for t in 0..args.tenants {
        let (g, entries) = store.knowledge_vectors(&scope(t), BASE).await?;
        index.load(
            PartitionKey::new(tenant(t).id, format!("kb:{BASE}")),
            g,
            entries,
        );
    }
    println!(
        "index: {} partitions loaded from the store in {:.1} s",
        args.tenants,
        started.elapsed().as_secs_f64()
    );

    let fts = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await?;
    let words = Words::new();
    let mut rng = Rng(42);
    let queries: Vec<(usize, String)> = (0..args.queries)
        .map(|_| {
            let t = (rng.next() % args.tenants as u64) as usize;
            let q: Vec<&str> = (0..3).map(|_| words.query_word(&mut rng)).collect();
            (t, q.join(" "))
        })
        .collect();
    let mut baseline = Stats { samples: vec![] };
    let mut full = Stats { samples: vec![] };
    let mut hybrid = Stats { samples: vec![] };
    let mut hits = [0usize; 3];
    let mut rng = Rng(7);
    // Warm-up, then the three methods interleaved query by query so drift hits all alike.
    for (round, (t, q)) in queries.iter().enumerate() {
        let s = scope(*t);
        let terms = query_terms(q);
        let hex: String = s
            .tenant()
            .as_str()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let any = terms
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let expr = format!(
            "fts_scope : \"k{hex}x{}\" AND search_text : ({any})",
            BASE.to_lowercase()
        );

        let qv = vector(&mut rng, args.dims);
        let (mut d0, mut d1, mut d2) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut rows, mut chunks, mut top) = (0usize, 0usize, 0usize);
        // The first method of a round pays for the tenant's pages coming into the cache; the
        // order rotates so that no method is always first.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let t0 = Instant::now();
                    let r: Vec<(String, String)> = sqlx::query_as(
                        "WITH top AS MATERIALIZED (
                           SELECT rowid, bm25(knowledge_chunks_fts, 1.0, 0.0) AS rank
                           FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH ?1
                           ORDER BY rank LIMIT 5)
                         SELECT c.id, c.text FROM top CROSS JOIN knowledge_chunks c
                           ON c.rowid = top.rowid ORDER BY top.rank",
                    )
                    .bind(&expr)
                    .fetch_all(&fts)
                    .await?;
                    d0 = t0.elapsed();
                    rows = r.len();
                }
                1 => {
                    let t1 = Instant::now();
                    let ft = store.search_knowledge_text(&s, BASE, &terms, 40).await?;
                    let ids: Vec<String> = ft.iter().map(|h| h.0.clone()).collect();
                    let got = store.get_knowledge_chunks(&s, BASE, &ids).await?;
                    d1 = t1.elapsed();
                    chunks = got.len();
                }
                _ => {
                    let t2 = Instant::now();
                    let ft = store.search_knowledge_text(&s, BASE, &terms, 40).await?;
                    let key = PartitionKey::new(s.tenant().clone(), format!("kb:{BASE}"));
                    let g = store.knowledge_generation(&s, BASE).await?;
                    anyhow::ensure!(index.generation(&key) == Some(g), "index behind the store");
                    let vec_hits = index.search(&key, &qv, 40).unwrap_or_default();
                    let fused = reciprocal_rank_fusion(
                        &[
                            ft.into_iter().map(|h| h.0).collect(),
                            vec_hits.into_iter().map(|h| h.id).collect(),
                        ],
                        RRF_K,
                    );
                    let ids: Vec<String> = fused.iter().map(|f| f.id.clone()).collect();
                    let got = store.get_knowledge_chunks(&s, BASE, &ids).await?;
                    let by_id: HashMap<&str, &str> = got
                        .iter()
                        .map(|c| (c.id.as_str(), c.text.as_str()))
                        .collect();
                    top = fused
                        .iter()
                        .filter_map(|f| by_id.get(f.id.as_str()).copied())
                        .take(5)
                        .count();
                    d2 = t2.elapsed();
                }
            }
        }

        if round >= args.queries / 10 {
            baseline.samples.push(d0);
            full.samples.push(d1);
            hybrid.samples.push(d2);
        }
        hits[0] += rows.min(5);
        hits[1] += chunks.min(5);
        hits[2] += top;
    }
    let n = baseline.samples.len();
    println!(
        "\nretrieval, {} tenants x {} chunks, one pooled base, {n} queries per method (after {} warm-up), top 5:",
        args.tenants,
        args.records,
        args.queries / 10
    );
    println!("| method | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!("{}", baseline.line("SQLite FTS5 alone (baseline)"));
    println!("{}", full.line("Tenantry full-text"));
    println!(
        "{}",
        hybrid.line("Tenantry hybrid (FTS5 + exact vector + RRF)")
    );
    println!(
        "ratios to the baseline: full-text p50 {:.2}x p99 {:.2}x; hybrid p50 {:.2}x p99 {:.2}x",
        full.pct(0.5) / baseline.pct(0.5),
        full.pct(0.99) / baseline.pct(0.99),
        hybrid.pct(0.5) / baseline.pct(0.5),
        hybrid.pct(0.99) / baseline.pct(0.99)
    );
    println!(
        "results per query (mean): baseline {:.2}, full-text {:.2}, hybrid {:.2}",
        hits[0] as f64 / args.queries as f64,
        hits[1] as f64 / args.queries as f64,
        hits[2] as f64 / args.queries as f64
    );

    if let Some(model) = &args.model {
        ingest(&store, &args, model).await?;
    } else {
        println!("\ningestion: skipped (no --model / TENANTRY_LOCAL_EMBEDDER_MODEL)");
    }
    Ok(())
}

async fn ingest(store: &Store, args: &Args, model: &std::path::Path) -> Result<()> {
    let c = tenantry_models::LocalConfig {
        path: Some(model.to_path_buf()),
        ..Default::default()
    };
    let provider = tenantry_models::LocalProvider::new("providers.minilm", &c, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let corpus: Vec<String> =
        include_str!("../../../crates/tenantry-memory/tests/corpus/chunks.txt")
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, '|');
                let (_, h, t) = (p.next()?, p.next()?, p.next()?);
                Some(format!("{}\n{t}", h))
            })
            .collect();
    let texts: Vec<String> = corpus
        .iter()
        .cycle()
        .take(args.ingest_chunks)
        .cloned()
        .collect();
    let s = scope(0);
    let started = Instant::now();
    let mut embed_time = Duration::ZERO;
    for (d, batch) in texts.chunks(64).enumerate() {
        let t = Instant::now();
        let (vectors, _) = provider.embed_blocking(batch);
        embed_time += t.elapsed();
        let chunks: Vec<NewChunk> = batch
            .iter()
            .zip(vectors)
            .enumerate()
            .map(|(i, (text, v))| NewChunk {
                seq: i as i64,
                heading_path: vec![],
                text: text.clone(),
                search_text: text.clone(),
                embedding: Some(v),
                embed_model: Some("minilm".into()),
            })
            .collect();
        store
            .put_document(&s, &doc(format!("ingest{d}"), chunks.len() as i64), &chunks)
            .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\ningestion with the local embedder (all-MiniLM-L6-v2, {} threads): {} chunks in {secs:.1} s = {:.1} chunks/s ({:.1} s of it embedding)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        texts.len(),
        texts.len() as f64 / secs,
        embed_time.as_secs_f64()
    );
    let mut q = Stats { samples: vec![] };
    for t in texts.iter().take(200) {
        let short: String = t.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
        let t0 = Instant::now();
        provider.embed_blocking(std::slice::from_ref(&short));
        q.samples.push(t0.elapsed());
    }
    println!(
        "query embedding (8 words, local embedder): p50 {:.2} ms, p99 {:.2} ms",
        q.pct(0.5),
        q.pct(0.99)
    );
    Ok(())
}
