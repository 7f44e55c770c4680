//! The in-process similarity index: exact (brute-force) cosine search over unit vectors, in
//! partitions of one tenant each.
//!
//! Vectors live in the store, so every replica sees them; this index is a cache of them built
//! per partition on first use and kept current by the writes of this process, with a
//! generation number the store bumps on every write of the partition: a replica that finds the
//! store's generation ahead of its own reloads the partition (`VectorIndex::generation`).
//!
//! Exact search reads every vector of the partition, which at 20,000 vectors of 384 floats is
//! about 8 million multiply-adds, a millisecond or two: no approximate index is needed at the
//! sizes a tenant's knowledge base has here, and exact search has no recall loss. A partition
//! is keyed by its tenant, so a lookup can never return another tenant's vector; this module
//! must never merge partitions.

use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, RwLock};

use tenantry_core::TenantId;

/// One partition: a tenant's vectors of one space (a knowledge base, a memory...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub tenant: TenantId,
    /// The space within the tenant, e.g. `kb:KB12345678`.
    pub space: String,
}

impl PartitionKey {
    pub fn new(tenant: TenantId, space: impl Into<String>) -> Self {
        Self {
            tenant,
            space: space.into(),
        }
    }
}

/// One search result: an entry's id and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
}

#[derive(Debug, Default)]
struct Partition {
    /// The store's generation this partition reflects.
    generation: i64,
    dims: usize,
    ids: Vec<String>,
    /// `ids.len() * dims` floats, row after row.
    data: Vec<f32>,
    at: HashMap<String, usize>,
}

impl Partition {
    fn insert(&mut self, id: String, v: &[f32]) {
        if self.dims == 0 {
            self.dims = v.len();
        }
        if v.len() != self.dims {
            // A vector of another model's dimension cannot be compared; the caller re-embeds
            // the partition when its model changes.
            return;
        }
        match self.at.get(&id) {
            Some(&i) => self.data[i * self.dims..(i + 1) * self.dims].copy_from_slice(v),
            None => {
                self.at.insert(id.clone(), self.ids.len());
                self.ids.push(id);
                self.data.extend_from_slice(v);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.at.remove(id) else { return };
        let last = self.ids.len() - 1;
        if i != last {
            let moved = self.ids[last].clone();
            let (dst, src) = (i * self.dims, last * self.dims);
            self.data.copy_within(src..src + self.dims, dst);
            self.ids[i] = moved.clone();
            self.at.insert(moved, i);
        }
        self.ids.pop();
        self.data.truncate(last * self.dims);
    }

    fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        if self.dims == 0 || query.len() != self.dims || k == 0 {
            return Vec::new();
        }
        // A min-heap of the best k so far, by score.
        let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
        for (i, row) in self.data.chunks_exact(self.dims).enumerate() {
            let score = dot(row, query);
            if best.len() < k {
                best.push(Scored(score, i));
            } else if best.peek().is_some_and(|w| score > w.0) {
                best.pop();
                best.push(Scored(score, i));
            }
        }
        let mut hits: Vec<Hit> = best
            .into_iter()
            .map(|Scored(score, i)| Hit {
                id: self.ids[i].clone(),
                score,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits
    }
}

/// Reversed ordering by score, so `BinaryHeap` (a max-heap) keeps the worst on top.
#[derive(Debug)]
struct Scored(f32, usize);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// The dot product, in eight lanes so the compiler vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The index of every loaded partition. Cheap to clone; clones share it.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    parts: Arc<RwLock<HashMap<PartitionKey, Arc<RwLock<Partition>>>>>,
}

impl VectorIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn part(&self, key: &PartitionKey) -> Option<Arc<RwLock<Partition>>> {
        self.parts.read().ok()?.get(key).cloned()
    }

    /// The store generation the loaded partition reflects; `None` if it is not loaded.
    pub fn generation(&self, key: &PartitionKey) -> Option<i64> {
        let part = self.part(key)?;
        let g = part.read().ok()?.generation;
        Some(g)
    }

    /// Replaces the partition with `entries` (all of the partition's vectors, as the store has
    /// them at `generation`).
    pub fn load(&self, key: PartitionKey, generation: i64, entries: Vec<(String, Vec<f32>)>) {
        let mut part = Partition {
            generation,
            ..Partition::default()
        };
        for (id, v) in entries {
            part.insert(id, &v);
        }
        if let Ok(mut parts) = self.parts.write() {
            parts.insert(key, Arc::new(RwLock::new(part)));
        }
    }

    /// Applies one write of this process to a loaded partition: removes the ids that start with
    /// `remove_prefix` (a re-ingested or deleted document's chunks), inserts `entries`, and
    /// records `generation`. A partition that is not loaded is left alone (it loads in full on
    /// first use), and so is one that has fallen behind the store (it reloads): only a partition
    /// exactly at `generation - 1` can be brought to `generation` by this write.
    pub fn apply(
        &self,
        key: &PartitionKey,
        generation: i64,
        remove_prefix: Option<&str>,
        entries: &[(String, Vec<f32>)],
    ) {
        let Some(part) = self.part(key) else { return };
        let Ok(mut p) = part.write() else { return };
        if p.generation != generation - 1 {
            // Someone else wrote in between; forget it so the next search reloads.
            drop(p);
            self.forget(key);
            return;
        }
        if let Some(prefix) = remove_prefix {
            let gone: Vec<String> = p
                .ids
                .iter()
                .filter(|id| id.starts_with(prefix))
                .cloned()
                .collect();
            for id in gone {
                p.remove(&id);
            }
        }
        for (id, v) in entries {
            p.insert(id.clone(), v);
        }
        p.generation = generation;
    }

    /// The `k` entries most similar to `query` (a unit vector); `None` if the partition is not
    /// loaded.
    pub fn search(&self, key: &PartitionKey, query: &[f32], k: usize) -> Option<Vec<Hit>> {
        let part = self.part(key)?;
        let p = part.read().ok()?;
        Some(p.search(query, k))
    }

    /// The number of vectors in a loaded partition.
    pub fn len(&self, key: &PartitionKey) -> Option<usize> {
        let part = self.part(key)?;
        let n = part.read().ok()?.ids.len();
        Some(n)
    }

    /// Drops one partition (it reloads from the store on next use).
    pub fn forget(&self, key: &PartitionKey) {
        if let Ok(mut parts) = self.parts.write() {
            parts.remove(key);
        }
    }

    /// Drops every partition of `tenant` (its data was erased or it was deleted).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut parts) = self.parts.write() {
            parts.retain(|k, _| &k.tenant != tenant);
        }
    }

    /// Drops every partition of one space, whatever the tenant (a pooled base was deleted).
    pub fn forget_space(&self, space: &str) {
        if let Ok(mut parts) = self.parts.write() {
            parts.retain(|k, _| k.space != space);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(t: &str) -> PartitionKey {
        PartitionKey::new(TenantId::new(t).unwrap(), "kb:one")
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::search::normalize(&mut v);
        v
    }

    #[test]
    fn nearest_first_and_partitions_never_mix() {
        let idx = VectorIndex::new();
        idx.load(
            key("acme"),
            1,
            vec![
                ("a:0".into(), unit(&[1.0, 0.0, 0.0])),
                ("a:1".into(), unit(&[0.7, 0.7, 0.0])),
                ("b:0".into(), unit(&[0.0, 0.0, 1.0])),
            ],
        );
        idx.load(
            key("globex"),
            1,
            vec![("g:0".into(), unit(&[1.0, 0.0, 0.0]))],
        );
        let hits = idx
            .search(&key("acme"), &unit(&[1.0, 0.1, 0.0]), 2)
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["a:0", "a:1"]
        );
        let other = idx
            .search(&key("globex"), &unit(&[1.0, 0.0, 0.0]), 10)
            .unwrap();
        assert_eq!(other.len(), 1);
        assert!(idx.search(&key("initech"), &[1.0, 0.0, 0.0], 3).is_none());
    }

    #[test]
    fn writes_replace_a_document_and_stale_partitions_are_dropped() {
        let idx = VectorIndex::new();
        idx.load(
            key("acme"),
            4,
            vec![
                ("a:0".into(), unit(&[1.0, 0.0])),
                ("a:1".into(), unit(&[0.0, 1.0])),
                ("b:0".into(), unit(&[1.0, 1.0])),
            ],
        );
        idx.apply(
            &key("acme"),
            5,
            Some("a:"),
            &[("a:0".into(), unit(&[0.0, 1.0]))],
        );
        assert_eq!(idx.len(&key("acme")), Some(2));
        assert_eq!(idx.generation(&key("acme")), Some(5));
        let hits = idx.search(&key("acme"), &unit(&[0.0, 1.0]), 1).unwrap();
        assert_eq!(hits[0].id, "a:0");
        // A write the process did not see in between: the partition goes, to reload.
        idx.apply(&key("acme"), 9, None, &[]);
        assert_eq!(idx.generation(&key("acme")), None);
    }
}
