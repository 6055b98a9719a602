//! Fusion of the semantic and keyword rankings for hybrid search.

use std::collections::HashMap;
use std::hash::Hash;

/// How hybrid mode combines the semantic ranking (cosine similarities) with the keyword
/// ranking (Postgres `ts_rank_cd`), each best first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with a weight per list (`semantic_weight` and its complement).
    Rrf { k: f64, semantic_weight: f64 },
    /// Each list's scores min-max normalised over its candidates, then
    /// `ratio · semantic + (1 − ratio) · keyword` (Weaviate's relative score fusion,
    /// Meilisearch's `semanticRatio`).
    Relative { semantic_ratio: f64 },
}

/// Fuses the two rankings into one, best first. Ties keep the order of first appearance
/// (semantic list first), so the result is deterministic.
pub fn fuse<T: Clone + Eq + Hash>(fusion: Fusion, semantic: &[(T, f64)], keyword: &[(T, f64)]) -> Vec<(T, f64)> {
    let mut order: Vec<T> = Vec::new();
    let mut seen: HashMap<T, usize> = HashMap::new();
    for (t, _) in semantic.iter().chain(keyword) {
        if !seen.contains_key(t) {
            seen.insert(t.clone(), order.len());
            order.push(t.clone());
        }
    }
    let sem: HashMap<&T, (usize, f64)> = semantic.iter().enumerate().map(|(i, (t, s))| (t, (i + 1, *s))).collect();
    let key: HashMap<&T, (usize, f64)> = keyword.iter().enumerate().map(|(i, (t, s))| (t, (i + 1, *s))).collect();
    let (sem_range, key_range) = (bounds(semantic), bounds(keyword));
    let score = |t: &T| -> f64 {
        let (s, k) = (sem.get(t), key.get(t));
        match fusion {
            Fusion::Rrf { k: c, semantic_weight: w } => {
                s.map_or(0.0, |(r, _)| w / (c + *r as f64)) + k.map_or(0.0, |(r, _)| (1.0 - w) / (c + *r as f64))
            }
            Fusion::Relative { semantic_ratio: w } => {
                w * s.map_or(0.0, |(_, v)| normalised(sem_range, *v))
                    + (1.0 - w) * k.map_or(0.0, |(_, v)| normalised(key_range, *v))
            }
        }
    };
    let mut fused: Vec<(T, f64, usize)> = order.into_iter().map(|t| (t.clone(), score(&t), seen[&t])).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(t, s, _)| (t, s)).collect()
}

/// The lowest and highest score of a list.
fn bounds<T>(list: &[(T, f64)]) -> (f64, f64) {
    list.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| (lo.min(*s), hi.max(*s)))
}

/// `v` min-max normalised within `(lo, hi)` (1 when the list's scores are all equal).
fn normalised((lo, hi): (f64, f64), v: f64) -> f64 {
    if hi > lo { (v - lo) / (hi - lo) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_votes_by_rank_with_weights() {
        let semantic = [("a", 0.9), ("b", 0.8), ("c", 0.7)];
        let keyword = [("c", 2.0), ("d", 1.0)];
        let fused = fuse(Fusion::Rrf { k: 60.0, semantic_weight: 0.5 }, &semantic, &keyword);
        assert_eq!(fused[0].0, "c", "in both lists");
        assert!((fused[0].1 - (0.5 / 63.0 + 0.5 / 61.0)).abs() < 1e-12);
        assert_eq!(
            fused.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            ["c", "a", "b", "d"],
            "b and d tie; b was seen first"
        );
    }

    #[test]
    fn relative_fusion_mixes_normalised_scores() {
        // Semantic 0.9, 0.7, 0.5 normalise to 1, 0.5, 0; keyword 0.4, 0.1 to 1, 0.
        let semantic = [("a", 0.9), ("b", 0.7), ("c", 0.5)];
        let keyword = [("c", 0.4), ("d", 0.1)];
        let fused = fuse(Fusion::Relative { semantic_ratio: 0.9 }, &semantic, &keyword);
        let got: Vec<(&str, f64)> = fused.iter().map(|(t, s)| (*t, (s * 1000.0).round() / 1000.0)).collect();
        assert_eq!(got, [("a", 0.9), ("b", 0.45), ("c", 0.1), ("d", 0.0)]);
        // Ratio 1: the semantic order, keyword-only hits after; ratio 0: the best keyword
        // hit first (the lowest of each list normalises to 0, as an absent one does).
        let only_meaning = fuse(Fusion::Relative { semantic_ratio: 1.0 }, &semantic, &keyword);
        assert_eq!(only_meaning.iter().map(|(t, _)| *t).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        let only_words = fuse(Fusion::Relative { semantic_ratio: 0.0 }, &semantic, &keyword);
        assert_eq!(only_words[0], ("c", 1.0));
        // A single candidate normalises to 1, not a division by zero.
        let single = fuse(Fusion::Relative { semantic_ratio: 0.5 }, &[("a", 0.3)], &[("a", 0.01)]);
        assert_eq!(single, [("a", 1.0)]);
    }

    #[test]
    fn empty_lists_fuse_to_nothing() {
        assert!(fuse::<u8>(Fusion::Relative { semantic_ratio: 0.9 }, &[], &[]).is_empty());
    }
}
