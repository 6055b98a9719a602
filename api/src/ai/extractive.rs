//! Answers without a language model. With no provider key the assistant does not pretend:
//! it quotes the tenant's knowledge that matches the question, numbered like the sources
//! it returns, inside the personality's greeting and sign-off (`config.greeting`,
//! `config.sign_off`) when it has them, and says plainly when nothing matches.

use fibonacco_search::knowledge::Hit;

/// Marks answers built here wherever they are stored or returned.
pub const EXTRACTIVE_MODEL: &str = "knowledge-extract-v1";

/// A hit counts as an answer when the words matched (full text) or its meaning is at
/// least this close (cosine similarity of the MiniLM embeddings; unrelated sentences
/// score below about 0.2).
pub const RELEVANT_SIMILARITY: f64 = 0.35;

/// Longest quote taken from one entry (characters).
const QUOTE_CHARS: usize = 600;

pub fn relevant(hit: &Hit) -> bool {
    hit.keyword_score.is_some_and(|s| s > 0.0) || hit.semantic_score.is_some_and(|s| s >= RELEVANT_SIMILARITY)
}

/// The answer to a question from `hits` (numbered from 1 in order, as the sources are).
pub fn answer(hits: &[Hit], greeting: Option<&str>, sign_off: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(g) = greeting.map(str::trim).filter(|g| !g.is_empty()) {
        out.push_str(g);
        out.push_str("\n\n");
    }
    let quoted: Vec<(usize, &Hit)> =
        hits.iter().enumerate().map(|(i, h)| (i + 1, h)).filter(|(_, h)| relevant(h)).collect();
    if quoted.is_empty() {
        out.push_str(
            "I could not find anything about this in our knowledge base. No language model is configured, \
             so I can only answer from it; please contact us directly.",
        );
    } else {
        out.push_str("Here is what our knowledge base says:\n");
        for (n, h) in quoted {
            let text = super::context::excerpt(h).trim();
            let mut quote: String = text.chars().take(QUOTE_CHARS).collect();
            if text.chars().count() > QUOTE_CHARS {
                quote.push('…');
            }
            let origin = if h.shared { " (published by another business)" } else { "" };
            out.push_str(&format!("\n[{n}] {}{origin}: {}\n", h.title.trim(), quote));
        }
    }
    if let Some(s) = sign_off.map(str::trim).filter(|s| !s.is_empty()) {
        out.push_str("\n\n");
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(title: &str, text: &str, keyword: Option<f64>, semantic: Option<f64>) -> Hit {
        Hit {
            source: None,
            id: uuid::Uuid::now_v7(),
            title: title.into(),
            snippet: text.into(),
            category: None,
            subcategory: None,
            tags: vec![],
            is_public: false,
            shared: false,
            semantic_score: semantic,
            keyword_score: keyword,
            score: 0.0,
            chunk: None,
        }
    }

    #[test]
    fn quotes_what_matches_and_says_when_nothing_does() {
        let hits = [
            hit("Opening hours", "We open at nine and close at five.", Some(0.4), Some(0.6)),
            hit("Parking", "Free parking behind the shop.", None, Some(0.1)),
        ];
        let text = answer(&hits, Some("Hi, Ava here."), Some("— Ava"));
        assert!(text.starts_with("Hi, Ava here.\n\n"), "{text}");
        assert!(text.contains("[1] Opening hours: We open at nine and close at five."), "{text}");
        assert!(!text.contains("Parking"), "an unrelated entry is not quoted: {text}");
        assert!(text.ends_with("— Ava"));
        let none = answer(&hits[1..], None, None);
        assert!(none.starts_with("I could not find anything"), "{none}");
        let long = answer(&[hit("Long", &"word ".repeat(400), Some(1.0), None)], None, None);
        assert!(long.ends_with("…\n") && long.chars().count() < 700, "{long}");
    }
}
