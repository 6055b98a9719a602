//! Domain newtypes. Each is built only by `parse`, so a value of the type is valid by
//! construction and handlers, jobs and the CLI share one definition of "valid".

use std::fmt;

use serde::Serialize;

/// Why a value was refused, in words fit for a 422 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A URL slug: lowercase ASCII letters and digits in groups joined by single hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Slug(String);
string_newtype!(Slug);

impl Slug {
    pub const MAX_LEN: usize = 120;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid("must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(Invalid("must be at most 120 characters"));
        }
        let valid_chars = raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_chars || raw.starts_with('-') || raw.ends_with('-') || raw.contains("--") {
            return Err(Invalid("must be lowercase letters, digits and single hyphens, e.g. `acme-corp`"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Derives a slug from free text ("Acme Corp. (EU)" → "acme-corp-eu"). Letters with
    /// accents lose them where a plain ASCII twin is obvious; other characters separate words.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut out = String::with_capacity(text.len());
        let mut push = |ch: char| {
            if ch.is_ascii_alphanumeric() {
                out.push(ch.to_ascii_lowercase());
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        };
        for ch in text.chars() {
            match fold_accent(ch) {
                Some(plain) => plain.chars().for_each(&mut push),
                None => push(ch),
            }
        }
        while out.ends_with('-') {
            out.pop();
        }
        out.truncate(Self::MAX_LEN);
        while out.ends_with('-') {
            out.pop();
        }
        Self::parse(&out).ok()
    }
}

/// The plain ASCII spelling of a character that has an obvious one.
fn fold_accent(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ñ' | 'Ñ' => "n",
        'ç' | 'Ç' => "c",
        'ß' => "ss",
        '&' => " and ",
        _ => return None,
    })
}

/// An e-mail address, trimmed, with the domain lowercased. Deliberately permissive in
/// the local part (RFC 5321 allows much); strict about shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.len() > 254 {
            return Err(Invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err(Invalid("must be a valid e-mail address"));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '<' || c == '>');
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(Invalid("must be a valid e-mail address"));
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    /// For logs: the domain only, never the full address.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// A phone number normalised to E.164 (`+` then 8 to 15 digits). Spaces, dots, dashes and
/// parentheses are accepted as separators; a leading `00` means `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);
string_newtype!(PhoneNumber);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        let (plus, rest) = match raw.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => match raw.strip_prefix("00") {
                Some(rest) => (true, rest),
                None => (false, raw),
            },
        };
        if !plus {
            return Err(Invalid("must be in international format, starting with + and the country code"));
        }
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(Invalid("may contain only digits, spaces, dashes, dots and parentheses"));
                }
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(Invalid("must have 8 to 15 digits after the + and not start with 0"));
        }
        Ok(Self(format!("+{digits}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(TimeZone::parse("Europe/Berlin").unwrap().as_str(), "Europe/Berlin");
        assert_eq!(TimeZone::parse("UTC").unwrap().as_str(), "UTC");
        for bad in ["", "Mars/Olympus", "Europe/Berlin\n", "+02:00", "'; drop table x; --", "Europe/Berlin\0"] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("acme-corp-2").is_ok());
        for bad in ["", "Acme", "acme--corp", "-acme", "acme-", "acme corp", "acmé"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Slug::from_text("  Café & Bar (EU)!").unwrap().as_str(), "cafe-and-bar-eu");
        assert_eq!(Slug::from_text("Straße 9").unwrap().as_str(), "strasse-9");
        assert!(Slug::from_text("!!!").is_none());
        assert_eq!(Slug::from_text(&"ab ".repeat(100)).unwrap().as_str().len(), 119);
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Jane.Doe+x@Example.COM ").unwrap().as_str(), "Jane.Doe+x@example.com");
        for bad in ["", "jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", "jane@-x.com", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Email::parse("a@b.co").unwrap().domain(), "b.co");
    }

    #[test]
    fn phones() {
        assert_eq!(PhoneNumber::parse("+1 (555) 010-9999").unwrap().as_str(), "+15550109999");
        assert_eq!(PhoneNumber::parse("0044 20 7946 0958").unwrap().as_str(), "+442079460958");
        for bad in ["5550109999", "+1", "+0123456789", "+1555abc9999", "+1234567890123456"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

/// An IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`), as the tz database
/// spells it. Postgres converts with its own copy of the database; a name it lacks is
/// handled where the conversion happens (`app_quiet_until` falls back to the tenant's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TimeZone(String);
string_newtype!(TimeZone);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.parse::<chrono_tz::Tz>() {
            Ok(tz) if raw.len() <= 64 => Ok(Self(tz.name().to_owned())),
            _ => Err(Invalid("must be an IANA time zone such as `Europe/Berlin` or `UTC`")),
        }
    }
}
