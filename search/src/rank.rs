//! Reciprocal rank fusion: each list votes `1 / (k + rank)` for its items (rank from 1);
//! items are ordered by the sum. k = 60 as in Cormack et al. and most engines.

use std::collections::HashMap;
use std::hash::Hash;

pub const RRF_K: f64 = 60.0;

/// Fuses ranked lists (best first) into one, best first, with each item's fused score.
/// Ties keep the order of first appearance, so the result is deterministic.
pub fn reciprocal_rank_fusion<T: Clone + Eq + Hash>(lists: &[Vec<T>], k: f64) -> Vec<(T, f64)> {
    let mut scores: HashMap<T, (f64, usize)> = HashMap::new();
    let mut order = 0usize;
    for list in lists {
        for (i, item) in list.iter().enumerate() {
            let entry = scores.entry(item.clone()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + (i + 1) as f64);
        }
    }
    let mut fused: Vec<(T, f64, usize)> = scores.into_iter().map(|(t, (s, o))| (t, s, o)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(t, s, _)| (t, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_in_both_lists_win_and_scores_follow_the_formula() {
        let semantic = vec!["a", "b", "c"];
        let keyword = vec!["c", "d"];
        let fused = reciprocal_rank_fusion(&[semantic, keyword], RRF_K);
        assert_eq!(fused[0].0, "c", "in both lists");
        assert!((fused[0].1 - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(
            fused.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            ["c", "a", "b", "d"],
            "b and d tie; b was seen first"
        );
    }

    #[test]
    fn empty_lists_fuse_to_nothing() {
        assert!(reciprocal_rank_fusion::<u8>(&[vec![], vec![]], RRF_K).is_empty());
    }
}
