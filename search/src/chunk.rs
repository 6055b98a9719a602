//! Splitting long entries into sections that each fit one vector.
//!
//! The model reads at most 256 word pieces (about 1,000 characters of English); anything
//! later in a long entry would be invisible to semantic search. Chunk 0 is the entry's own
//! text (title and content, truncated by the model); content longer than [`CHUNK_CHARS`]
//! also gets chunks 1.., paragraph-aligned sections of at most about that size, each
//! prefixed with the title so a section keeps its subject.

/// Target section size in characters (~100 word pieces): small enough that one topic
/// dominates a section's vector (MiniLM was trained on sentence-length texts).
pub const CHUNK_CHARS: usize = 400;

/// The texts to embed for an entry, chunk 0 first.
pub fn entry_texts(title: &str, content: &str) -> Vec<String> {
    let mut texts = vec![crate::embed::knowledge_text(title, content)];
    texts.extend(sections(content).into_iter().map(|s| crate::embed::knowledge_text(title, &s)));
    texts
}

/// The sections of `content` (chunks 1..), empty when it fits in one vector.
pub fn sections(content: &str) -> Vec<String> {
    let content = content.trim();
    if content.chars().count() <= CHUNK_CHARS {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for piece in pieces(content) {
        if !current.is_empty() && current.chars().count() + piece.chars().count() + 1 > CHUNK_CHARS {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&piece);
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Paragraphs, split further at sentence ends and then at whitespace when one paragraph
/// alone is longer than a section.
fn pieces(content: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in content.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if paragraph.chars().count() <= CHUNK_CHARS {
            out.push(paragraph.to_owned());
            continue;
        }
        for sentence in sentences(paragraph) {
            if sentence.chars().count() <= CHUNK_CHARS {
                out.push(sentence);
                continue;
            }
            let mut word_run = String::new();
            for word in sentence.split_whitespace() {
                if !word_run.is_empty() && word_run.chars().count() + word.chars().count() + 1 > CHUNK_CHARS {
                    out.push(std::mem::take(&mut word_run));
                }
                if !word_run.is_empty() {
                    word_run.push(' ');
                }
                // A single "word" longer than a section (a pasted blob) is cut by characters.
                let mut rest = word;
                while rest.chars().count() > CHUNK_CHARS {
                    let cut = rest.char_indices().nth(CHUNK_CHARS).map(|(i, _)| i).unwrap_or(rest.len());
                    out.push(rest[..cut].to_owned());
                    rest = &rest[cut..];
                }
                word_run.push_str(rest);
            }
            if !word_run.is_empty() {
                out.push(word_run);
            }
        }
    }
    out
}

fn sentences(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes: Vec<(usize, char)> = paragraph.char_indices().collect();
    for (k, &(i, c)) in bytes.iter().enumerate() {
        let next_is_space = bytes.get(k + 1).is_some_and(|&(_, n)| n.is_whitespace());
        if matches!(c, '.' | '!' | '?') && next_is_space {
            let end = i + c.len_utf8();
            out.push(paragraph[start..end].trim().to_owned());
            start = end;
        }
    }
    let tail = paragraph[start..].trim();
    if !tail.is_empty() {
        out.push(tail.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_content_is_one_vector() {
        assert!(sections("Open 9 to 5.").is_empty());
        assert_eq!(entry_texts("Hours", "Open 9 to 5."), vec!["Hours\n\nOpen 9 to 5.".to_owned()]);
    }

    #[test]
    fn long_content_splits_at_paragraphs_within_the_size() {
        let para = |n: usize| format!("Paragraph {n}. {}", "word ".repeat(60).trim());
        let content = (0..8).map(para).collect::<Vec<_>>().join("\n\n");
        let s = sections(&content);
        assert!(s.len() >= 3, "{} sections", s.len());
        assert!(s.iter().all(|c| c.chars().count() <= CHUNK_CHARS));
        // Nothing lost, nothing invented.
        let words: usize = s.iter().map(|c| c.split_whitespace().count()).sum();
        assert_eq!(words, content.split_whitespace().count());
        assert!(s[0].starts_with("Paragraph 0."));
        assert_eq!(entry_texts("T", &content).len(), s.len() + 1);
    }

    #[test]
    fn oversized_paragraphs_and_words_are_cut() {
        let run_on = "Sentence without end ".repeat(100);
        let blob = "x".repeat(2000);
        for content in [run_on.as_str(), blob.as_str()] {
            let s = sections(content);
            assert!(s.len() >= 2);
            assert!(s.iter().all(|c| c.chars().count() <= CHUNK_CHARS));
            assert_eq!(s.concat().replace(' ', ""), content.replace(' ', ""));
        }
        // Multi-byte text is cut at character boundaries.
        let s = sections(&"é".repeat(1700));
        assert!(s.iter().all(|c| c.chars().count() <= CHUNK_CHARS));
    }
}
