//! A field of a partial update: absent (leave as is), `null` (clear) or a value (set).

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }
    pub fn as_ref(&self) -> Patch<&T> {
        match self {
            Self::Missing => Patch::Missing,
            Self::Null => Patch::Null,
            Self::Value(v) => Patch::Value(v),
        }
    }
    /// For fields that may be left out but not cleared: `null` is a 422 on `field`.
    pub fn non_null(self, field: &str, errors: &mut crate::error::FieldErrors) -> Option<T> {
        match self {
            Self::Missing => None,
            Self::Null => {
                errors.add(field, "cannot be null");
                None
            }
            Self::Value(v) => Some(v),
        }
    }

    /// For clearable fields: `None` leaves the column, `Some(None)` clears it.
    pub fn nullable(self) -> Option<Option<T>> {
        match self {
            Self::Missing => None,
            Self::Null => Some(None),
            Self::Value(v) => Some(Some(v)),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Self::Missing => Patch::Missing,
            Self::Null => Patch::Null,
            Self::Value(v) => Patch::Value(f(v)),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    // Only called when the key is present: `#[serde(default)]` yields `Missing` otherwise.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Self::Null,
            Some(v) => Self::Value(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        email: Patch<String>,
    }

    #[test]
    fn distinguishes_absent_null_and_value() {
        let parse = |s: &str| serde_json::from_str::<Body>(s).unwrap().email;
        assert_eq!(parse("{}"), Patch::Missing);
        assert_eq!(parse(r#"{"email": null}"#), Patch::Null);
        assert_eq!(parse(r#"{"email": "a@b.co"}"#), Patch::Value("a@b.co".to_string()));
    }
}
