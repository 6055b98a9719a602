//! Which CSV column fills which customer field. Headers are matched by their usual names
//! (`E-mail Address`, `Mobile`, `First Name`, …); any other column becomes a custom field
//! (a key of the customer's `metadata`, so campaigns can merge it as `{{ key }}`). The
//! uploader can override any column.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::FieldErrors;

/// Where one column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    FirstName,
    LastName,
    Email,
    Phone,
    /// Tags separated by `;`, `,` or `|`, added to `metadata.tags`.
    Tags,
    /// The customer's IANA time zone (quiet hours apply in it).
    TimeZone,
    /// A key of `metadata`.
    Custom(String),
    /// A key of `business_context` (what the AI assistant reads).
    Context(String),
    Ignore,
}

impl Field {
    /// Parses what an uploader writes in a mapping: `name`, `first_name`, `last_name`,
    /// `email`, `phone`, `tags`, `ignore`, `custom.<key>` or `context.<key>`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        Ok(match raw {
            "name" => Self::Name,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "tags" => Self::Tags,
            "timezone" => Self::TimeZone,
            "ignore" => Self::Ignore,
            _ => match raw.split_once('.') {
                Some(("custom", key)) => Self::Custom(key_of(key)?),
                Some(("context", key)) => Self::Context(key_of(key)?),
                _ => {
                    return Err(
                        "must be name, first_name, last_name, email, phone, tags, timezone, ignore, custom.<key> or context.<key>"
                            .into(),
                    );
                }
            },
        })
    }

    /// The field a header names by convention; anything else is a custom field.
    fn guess(header: &str) -> Self {
        let key = normalise(header);
        match key.as_str() {
            "" => Self::Ignore,
            "name" | "full_name" | "customer" | "customer_name" | "contact" | "contact_name" => Self::Name,
            "first_name" | "firstname" | "given_name" | "first" => Self::FirstName,
            "last_name" | "lastname" | "surname" | "family_name" | "last" => Self::LastName,
            "email" | "e_mail" | "email_address" | "e_mail_address" | "mail" => Self::Email,
            "phone" | "phone_number" | "mobile" | "mobile_phone" | "telephone" | "tel" | "cell" => Self::Phone,
            "tags" | "tag" | "labels" => Self::Tags,
            "timezone" | "time_zone" | "tz" => Self::TimeZone,
            _ => Self::Custom(key),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Name => "name".into(),
            Self::FirstName => "first_name".into(),
            Self::LastName => "last_name".into(),
            Self::Email => "email".into(),
            Self::Phone => "phone".into(),
            Self::Tags => "tags".into(),
            Self::TimeZone => "timezone".into(),
            Self::Custom(k) => format!("custom.{k}"),
            Self::Context(k) => format!("context.{k}"),
            Self::Ignore => "ignore".into(),
        }
    }
}

/// Lower-case ASCII letters, digits and single underscores: `E-mail Address` →
/// `e_mail_address`. Other characters separate words.
fn normalise(header: &str) -> String {
    let mut out = String::new();
    for ch in header.trim().trim_start_matches('\u{feff}').chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out.truncate(64);
    out
}

fn key_of(raw: &str) -> Result<String, String> {
    let key = normalise(raw);
    if key.is_empty() {
        return Err("the key after the dot must hold a letter or digit".into());
    }
    if key == "tags" {
        return Err("`tags` is where the tags column goes; map it to `tags`".into());
    }
    Ok(key)
}

/// The resolved mapping: one field per column, in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub headers: Vec<String>,
    pub fields: Vec<Field>,
}

impl Mapping {
    /// Resolves `headers` with the uploader's `overrides` (header → field text). Refuses
    /// a mapping that names no way to tell customers apart (no e-mail and no phone
    /// column), two columns for one field, or an override for a missing header. A file
    /// without names can still update customers; a row of it that would create one is
    /// reported.
    pub fn resolve(headers: &[String], overrides: &BTreeMap<String, String>, errors: &mut FieldErrors) -> Self {
        let mut fields: Vec<Field> = headers.iter().map(|h| Field::guess(h)).collect();
        for (header, target) in overrides {
            let at = format!("mapping.{header}");
            let Some(i) = headers.iter().position(|h| h.trim() == header.trim()) else {
                errors.add(at, "is not a column of the file's header");
                continue;
            };
            match Field::parse(target) {
                Ok(f) => fields[i] = f,
                Err(e) => errors.add(at, e),
            }
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for f in fields.iter().filter(|f| **f != Field::Ignore) {
            *seen.entry(f.label()).or_default() += 1;
        }
        for (label, n) in &seen {
            if *n > 1 {
                errors.add("mapping", format!("{n} columns go to `{label}`; map all but one to `ignore`"));
            }
        }
        let has = |f: Field| fields.contains(&f);
        if !has(Field::Email) && !has(Field::Phone) {
            errors.add("mapping", "needs an e-mail or a phone column: customers are matched by them");
        }
        Self { headers: headers.to_vec(), fields }
    }

    /// As stored on the import and shown to the uploader: header → field.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.headers.iter().zip(&self.fields).map(|(h, f)| (h.clone(), Value::String(f.label()))).collect(),
        )
    }

    /// The stored form read back.
    pub fn from_json(headers: &[String], stored: &Value) -> Option<Self> {
        let fields = headers
            .iter()
            .map(|h| stored.get(h).and_then(Value::as_str).and_then(|f| Field::parse(f).ok()))
            .collect::<Option<Vec<Field>>>()?;
        Some(Self { headers: headers.to_vec(), fields })
    }
}

/// `;` when the header line holds more semicolons than commas (spreadsheets in locales
/// with a decimal comma export that way), else `,`.
pub fn delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or_default();
    if first.matches(';').count() > first.matches(',').count() { b';' } else { b',' }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn usual_headers_are_recognised_and_the_rest_are_custom_fields() {
        let mut errors = FieldErrors::default();
        let m = Mapping::resolve(
            &headers(&["\u{feff}First Name", "Last Name", "E-mail Address", "Mobile", "Tags", "Company Size", ""]),
            &BTreeMap::new(),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            m.fields,
            vec![
                Field::FirstName,
                Field::LastName,
                Field::Email,
                Field::Phone,
                Field::Tags,
                Field::Custom("company_size".into()),
                Field::Ignore
            ]
        );
        assert_eq!(Mapping::from_json(&m.headers, &m.to_json()), Some(m));
    }

    #[test]
    fn overrides_are_checked() {
        let h = headers(&["Who", "Mail", "Firma", "Notes"]);
        let mut errors = FieldErrors::default();
        let over: BTreeMap<String, String> = [
            ("Who".into(), "name".into()),
            ("Firma".into(), "context.company".into()),
            ("Notes".into(), "ignore".into()),
        ]
        .into();
        let m = Mapping::resolve(&h, &over, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(m.fields, vec![Field::Name, Field::Email, Field::Context("company".into()), Field::Ignore]);

        let mut errors = FieldErrors::default();
        let bad: BTreeMap<String, String> = [
            ("Nope".into(), "name".into()),
            ("Who".into(), "birthday".into()),
            ("Firma".into(), "custom.tags".into()),
            ("Notes".into(), "email".into()),
        ]
        .into();
        Mapping::resolve(&h, &bad, &mut errors);
        for field in ["mapping.Nope", "mapping.Who", "mapping.Firma", "mapping"] {
            assert!(errors.contains(field), "{field}: {errors:?}");
        }
    }

    #[test]
    fn a_file_without_a_key_is_refused() {
        let mut errors = FieldErrors::default();
        Mapping::resolve(&headers(&["Name", "City"]), &BTreeMap::new(), &mut errors);
        assert!(errors.contains("mapping"));
        let mut errors = FieldErrors::default();
        Mapping::resolve(&headers(&["Email", "Tags"]), &BTreeMap::new(), &mut errors);
        assert!(errors.is_empty(), "a file that only tags customers is fine: {errors:?}");
    }

    #[test]
    fn semicolon_files_are_detected() {
        assert_eq!(delimiter("Name;Email;Note, with comma\nA;b@c.d;x"), b';');
        assert_eq!(delimiter("Name,Email\n"), b',');
    }
}
