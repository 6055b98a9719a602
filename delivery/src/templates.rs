//! The merge language of e-mail templates, SMS templates and phone scripts: placeholders
//! look like `{{ first_name }}`; their names are collected into `variables` when a
//! template is saved and filled from the recipient's fields when it is sent.

/// Placeholder names in order of first appearance: `{{ name }}` → `name`.
pub fn placeholders(texts: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for text in texts {
        let mut rest = *text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let name = after[..end].trim();
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_owned());
            }
            rest = &after[end + 2..];
        }
    }
    out
}

/// Fills `{{ name }}` placeholders from `fields`; a placeholder with no field becomes
/// empty (a merge never leaks template syntax to a customer). Text that is not a
/// placeholder (`{{ bad name }}`, an unclosed `{{`) is kept as written.
pub fn render(text: &str, fields: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        out.push_str(&rest[..start]);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            if let Some((_, v)) = fields.iter().find(|(k, _)| k == name) {
                out.push_str(v);
            }
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_known_fields_and_blanks_unknown_ones() {
        let fields = vec![("first_name".to_owned(), "Ada".to_owned())];
        assert_eq!(super::render("Hi {{ first_name }}{{missing}}!", &fields), "Hi Ada!");
        assert_eq!(super::render("{{ bad name }} {{", &fields), "{{ bad name }} {{");
    }

    #[test]
    fn finds_placeholders_once_in_order() {
        let vars = super::placeholders(&["Hi {{ first_name }}, {{company}}!", "{{first_name}} {{ bad name }} {{"]);
        assert_eq!(vars, vec!["first_name", "company"]);
    }
}
