//! Reciprocal-rank fusion: each list contributes `1 / (k + rank)` (rank from 1) to the score of
//! every item it holds, and items are ordered by their summed score.
//!
//! RRF needs no calibration between the lists' own scores (BM25 and cosine similarity live on
//! different scales), and `k` damps the weight of the very first ranks: with `k = 60` (the value
//! of the original study, and ours) an item ranked 1st in one list and absent from the other
//! scores about as much as one ranked 30th in both.

use std::collections::HashMap;

/// The `k` of reciprocal-rank fusion.
pub const RRF_K: f64 = 60.0;

/// One fused item: its id, its fused score, and its rank (from 1) in each input list.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub id: String,
    pub score: f64,
    pub ranks: Vec<Option<usize>>,
}

/// Fuses ranked lists of ids (best first) with `k`; ties keep the order in which items were
/// first met (list by list), so the result is deterministic.
pub fn reciprocal_rank_fusion(lists: &[Vec<String>], k: f64) -> Vec<Fused> {
    let mut order: Vec<Fused> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (l, list) in lists.iter().enumerate() {
        for (i, id) in list.iter().enumerate() {
            let rank = i + 1;
            let slot = *at.entry(id.as_str()).or_insert_with(|| {
                order.push(Fused {
                    id: id.clone(),
                    score: 0.0,
                    ranks: vec![None; lists.len()],
                });
                order.len() - 1
            });
            let item = &mut order[slot];
            // A list naming an id twice counts its best rank only.
            if item.ranks[l].is_none() {
                item.ranks[l] = Some(rank);
                item.score += 1.0 / (k + rank as f64);
            }
        }
    }
    // A stable sort keeps first-met order among equal scores.
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_item_in_both_lists_beats_one_at_the_top_of_one() {
        let fused = reciprocal_rank_fusion(&[ids(&["a", "b", "c"]), ids(&["x", "c", "b"])], RRF_K);
        let order: Vec<&str> = fused.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(order[..2], ["b", "c"]);
        assert_eq!(fused[0].ranks, vec![Some(2), Some(3)]);
        let a = fused.iter().find(|f| f.id == "a").map(|f| f.score);
        assert_eq!(a, Some(1.0 / 61.0));
    }

    #[test]
    fn one_list_keeps_its_order_and_duplicates_count_once() {
        let fused = reciprocal_rank_fusion(&[ids(&["a", "b", "a"])], RRF_K);
        assert_eq!(fused.len(), 2);
        assert_eq!(fused[0].id, "a");
        assert_eq!(fused[0].score, 1.0 / 61.0);
        assert!(reciprocal_rank_fusion(&[], RRF_K).is_empty());
    }
}
