//! Field checks shared by every resource's request parsing. Each records its complaint
//! in `errors` under the field's name and returns a usable value, so a request's
//! problems are all reported at once.

use serde_json::{Map, Value};

use crate::{error::FieldErrors, patch::Patch};

/// JSON objects stored on a row are capped so one row cannot grow without bound.
pub const JSON_MAX_BYTES: usize = 64 * 1024;

/// `value` must be one of `allowed`.
pub fn one_of(value: &str, allowed: &[&str], field: &str, errors: &mut FieldErrors) -> String {
    if !allowed.contains(&value) {
        errors.add(field, format!("must be one of: {}", allowed.join(", ")));
    }
    value.to_owned()
}

/// Trimmed text of at most `max` characters, without control characters other than
/// newlines and tabs.
pub fn text(value: &str, max: usize, field: &str, errors: &mut FieldErrors) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        errors.add(field, format!("must be at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        errors.add(field, "must not contain control characters");
    }
    value.to_owned()
}

/// Required, non-empty text.
pub fn required_text(value: Option<String>, max: usize, field: &str, errors: &mut FieldErrors) -> String {
    match value {
        None => {
            errors.add(field, "is required");
            String::new()
        }
        Some(v) => {
            let v = text(&v, max, field, errors);
            if v.is_empty() {
                errors.add(field, "must not be empty");
            }
            v
        }
    }
}

/// Required text that can end up in a mail header (a subject, a name merged into one):
/// no line breaks, NUL or other control characters, which would end the header and start
/// another (header injection).
pub fn header_text(value: Option<String>, max: usize, field: &str, errors: &mut FieldErrors) -> String {
    let v = required_text(value, max, field, errors);
    if v.chars().any(|c| c == '\r' || c == '\n') {
        errors.add(field, "must be one line (no CR or LF): it goes into a mail header");
    }
    v
}

/// A patch of optional text: `None` leaves it, `Some(None)` clears it.
pub fn optional_text(
    patch: Patch<String>,
    max: usize,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<Option<String>> {
    match patch {
        Patch::Missing => None,
        Patch::Null => Some(None),
        Patch::Value(v) => Some(Some(text(&v, max, field, errors))),
    }
}

/// The largest position (ordering) a client may set. Without one a new item goes last
/// (`max(position) + 1`), so positions near `i32::MAX` would overflow that addition.
pub const MAX_POSITION: i32 = 1_000_000;

/// An optional position, 0 to [`MAX_POSITION`].
pub fn position(value: Option<i32>, errors: &mut FieldErrors) -> Option<i32> {
    if value.is_some_and(|p| !(0..=MAX_POSITION).contains(&p)) {
        errors.add("position", format!("must be between 0 and {MAX_POSITION}"));
    }
    value
}

/// A JSON object (absent or null → empty), at most [`JSON_MAX_BYTES`].
pub fn object(value: Option<Value>, field: &str, errors: &mut FieldErrors) -> Map<String, Value> {
    match value {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => {
            if serde_json::to_vec(&map).map(|b| b.len()).unwrap_or(usize::MAX) > JSON_MAX_BYTES {
                errors.add(field, "must be at most 64 KiB of JSON");
            }
            map
        }
        Some(_) => {
            errors.add(field, "must be a JSON object");
            Map::new()
        }
    }
}

/// A list of short labels (tags, codes): each trimmed, non-empty, at most `max_len`
/// characters; at most `max_items`; duplicates removed, order kept.
pub fn labels(
    values: Vec<String>,
    max_items: usize,
    max_len: usize,
    field: &str,
    errors: &mut FieldErrors,
) -> Vec<String> {
    if values.len() > max_items {
        errors.add(field, format!("must have at most {max_items} items"));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().to_owned();
        if v.is_empty() || v.chars().count() > max_len || v.chars().any(char::is_control) {
            errors.add(field, format!("items must be 1 to {max_len} printable characters"));
            continue;
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_record_errors_per_field() {
        let mut e = FieldErrors::default();
        one_of("bogus", &["a", "b"], "kind", &mut e);
        assert_eq!(text("  hi  ", 5, "t", &mut e), "hi");
        text("toolong", 3, "short", &mut e);
        assert_eq!(required_text(None, 5, "name", &mut e), "");
        object(Some(Value::Bool(true)), "meta", &mut e);
        assert_eq!(labels(vec![" a ".into(), "a".into(), "b".into()], 5, 10, "tags", &mut e), vec!["a", "b"]);
        labels(vec!["".into()], 5, 10, "codes", &mut e);
        for f in ["kind", "short", "name", "meta", "codes"] {
            assert!(e.contains(f), "{f}");
        }
        assert!(!e.contains("t") && !e.contains("tags"));
    }
}
