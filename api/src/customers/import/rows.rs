//! One CSV row made into a checked customer, and a row applied to a customer record. Pure
//! functions: the import's rules are tested here without a database.

use fibonacco_platform::domain::{Email, PhoneNumber, TimeZone};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::mapping::{Field, Mapping};

const NAME_MAX: usize = 255;
const VALUE_MAX: usize = 2000;
const TAG_MAX: usize = 64;
const TAGS_MAX: usize = 50;

/// A row that passed every check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// As a spreadsheet numbers it: the header is row 1.
    pub number: u32,
    pub name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<PhoneNumber>,
    pub tags: Vec<String>,
    pub timezone: Option<TimeZone>,
    pub custom: Map<String, Value>,
    pub context: Map<String, Value>,
}

/// Why a row (or one of its fields) was not imported. Never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: u32,
    pub field: String,
    pub message: String,
}

/// How rows and customers are matched: the e-mail (case-insensitive), else the phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Email(String),
    Phone(String),
}

impl Row {
    /// The keys this row can be matched by, e-mail first.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys = Vec::with_capacity(2);
        if let Some(e) = &self.email {
            keys.push(Key::Email(e.as_str().to_lowercase()));
        }
        if let Some(p) = &self.phone {
            keys.push(Key::Phone(p.as_str().to_owned()));
        }
        keys
    }
}

/// Checks one record against the mapping; every problem of the row is reported at once.
pub fn parse(number: u32, cells: &csv::StringRecord, mapping: &Mapping) -> Result<Row, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(RowError { row: number, field: field.to_owned(), message: message.to_owned() })
    };
    if cells.len() != mapping.fields.len() {
        fail("row", &format!("has {} cells where the header has {}", cells.len(), mapping.fields.len()));
        return Err(errors);
    }
    let mut row = Row { number, ..Row::default() };
    let (mut first, mut last) = (None, None);
    for (field, cell) in mapping.fields.iter().zip(cells.iter()) {
        let cell = cell.trim();
        if cell.is_empty() || *field == Field::Ignore {
            continue;
        }
        let label = field.label();
        // Postgres text and JSON cannot hold NUL: refused here, not at the insert.
        if cell.contains('\0') {
            fail(&label, "contains a NUL character");
            continue;
        }
        match field {
            Field::Name => row.name = Some(cell.to_owned()),
            Field::FirstName => first = Some(cell.to_owned()),
            Field::LastName => last = Some(cell.to_owned()),
            Field::Email => match Email::parse(cell) {
                Ok(e) => row.email = Some(e),
                Err(e) => fail(&label, e.0),
            },
            Field::Phone => match PhoneNumber::parse(cell) {
                Ok(p) => row.phone = Some(p),
                Err(e) => fail(&label, e.0),
            },
            Field::TimeZone => match TimeZone::parse(cell) {
                Ok(t) => row.timezone = Some(t),
                Err(e) => fail(&label, e.0),
            },
            Field::Tags => {
                for tag in cell.split([';', ',', '|']).map(str::trim).filter(|t| !t.is_empty()) {
                    if tag.chars().count() > TAG_MAX {
                        fail(&label, &format!("a tag is longer than {TAG_MAX} characters"));
                    } else if !row.tags.iter().any(|t| t == tag) {
                        row.tags.push(tag.to_owned());
                    }
                }
                if row.tags.len() > TAGS_MAX {
                    fail(&label, &format!("holds more than {TAGS_MAX} tags"));
                }
            }
            Field::Custom(key) | Field::Context(key) => {
                if cell.chars().count() > VALUE_MAX {
                    fail(&label, &format!("is longer than {VALUE_MAX} characters"));
                    continue;
                }
                let target = if matches!(field, Field::Custom(_)) { &mut row.custom } else { &mut row.context };
                target.insert(key.clone(), Value::String(cell.to_owned()));
            }
            Field::Ignore => {}
        }
    }
    if row.name.is_none() {
        row.name = match (first, last) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (f, l) => f.or(l),
        };
    }
    // A missing name is only wrong for a row that creates a customer (see `Book::take`).
    if row.name.as_ref().is_some_and(|n| n.chars().count() > NAME_MAX) {
        fail("name", &format!("must be at most {NAME_MAX} characters"));
    }
    // As the API's create: a name reaches mail subjects and headers through merge fields.
    if row.name.as_ref().is_some_and(|n| n.chars().any(char::is_control)) {
        fail("name", "must be one line, without control characters");
    }
    let key_errors = errors.iter().any(|e| e.field == "email" || e.field == "phone");
    if row.email.is_none() && row.phone.is_none() && !key_errors {
        errors.push(RowError {
            row: number,
            field: "email".into(),
            message: "a row needs an e-mail or a phone: customers are matched by them".into(),
        });
    }
    if errors.is_empty() { Ok(row) } else { Err(errors) }
}

/// A customer as the import sees it: an existing record, or one this import creates.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `None` until inserted.
    pub id: Option<Uuid>,
    /// The row that created it (0 for a customer that existed).
    pub row: u32,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub business_context: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl Record {
    pub fn new(row: &Row) -> Self {
        let mut r = Self {
            id: None,
            row: row.number,
            name: String::new(),
            email: None,
            phone: None,
            timezone: None,
            business_context: Map::new(),
            metadata: Map::new(),
        };
        r.apply(row);
        r
    }

    /// Fills the record from the row: cells that are set replace the record's value (an
    /// empty cell keeps it), custom and context keys are set one by one, tags are added to
    /// those the customer has. Returns whether anything changed.
    pub fn apply(&mut self, row: &Row) -> bool {
        let before = self.clone();
        if let Some(name) = &row.name {
            self.name = name.clone();
        }
        if let Some(email) = &row.email {
            // The same address in other letter case is the same address: keep it as stored.
            if !self.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email.as_str())) {
                self.email = Some(email.as_str().to_owned());
            }
        }
        if let Some(phone) = &row.phone {
            self.phone = Some(phone.as_str().to_owned());
        }
        if let Some(tz) = &row.timezone {
            self.timezone = Some(tz.as_str().to_owned());
        }
        for (k, v) in &row.context {
            self.business_context.insert(k.clone(), v.clone());
        }
        for (k, v) in &row.custom {
            self.metadata.insert(k.clone(), v.clone());
        }
        if !row.tags.is_empty() {
            let mut tags: Vec<Value> = match self.metadata.remove("tags") {
                Some(Value::Array(a)) => a,
                Some(Value::String(s)) => vec![Value::String(s)],
                _ => Vec::new(),
            };
            for tag in &row.tags {
                if !tags.iter().any(|t| t.as_str() == Some(tag)) {
                    tags.push(Value::String(tag.clone()));
                }
            }
            self.metadata.insert("tags".into(), Value::Array(tags));
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::FieldErrors;

    fn mapping(h: &[&str]) -> Mapping {
        let headers: Vec<String> = h.iter().map(|s| s.to_string()).collect();
        let mut errors = FieldErrors::default();
        let m = Mapping::resolve(&headers, &BTreeMap::new(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        m
    }

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn a_good_row_becomes_a_customer() {
        let m = mapping(&["First Name", "Last Name", "Email", "Phone", "Tags", "Plan"]);
        let row = parse(
            2,
            &record(&[" Ada ", "Lovelace", "ADA@Example.com", "+44 20 7946 0000", "vip; new|vip", "gold"]),
            &m,
        )
        .unwrap();
        assert_eq!(row.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(row.phone.as_ref().map(|p| p.as_str()), Some("+442079460000"));
        assert_eq!(row.tags, vec!["vip", "new"]);
        assert_eq!(row.custom.get("plan"), Some(&Value::String("gold".into())));
        assert_eq!(row.keys(), vec![Key::Email("ada@example.com".into()), Key::Phone("+442079460000".into())]);
    }

    #[test]
    fn every_problem_of_a_row_is_reported_without_its_value() {
        let m = mapping(&["Name", "Email", "Phone", "Note"]);
        let errors = parse(7, &record(&["A", "not-an-address", "0044", "a\0b"]), &m).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["email", "phone", "custom.note"]);
        assert!(errors.iter().all(|e| e.row == 7 && !e.message.contains("not-an-address")));
        let short = parse(3, &record(&["A", "a@b.example"]), &m).unwrap_err();
        assert_eq!(short[0].field, "row");
        let keyless = parse(4, &record(&["A", "", "", ""]), &m).unwrap_err();
        assert_eq!(keyless[0].field, "email");
    }

    #[test]
    fn applying_a_row_fills_set_cells_and_adds_tags() {
        let m = mapping(&["Name", "Email", "Phone", "Tags", "City"]);
        let first = parse(2, &record(&["Ada", "ada@example.com", "", "vip", "London"]), &m).unwrap();
        let mut r = Record::new(&first);
        assert_eq!(r.metadata.get("tags"), Some(&serde_json::json!(["vip"])));
        let again = parse(3, &record(&["", "ADA@example.com", "+15550100", "new", ""]), &m).unwrap();
        assert!(r.apply(&again));
        assert_eq!(r.name, "Ada", "an empty cell keeps the value");
        assert_eq!(r.email.as_deref(), Some("ada@example.com"), "the stored case stays");
        assert_eq!(r.phone.as_deref(), Some("+15550100"));
        assert_eq!(r.metadata.get("tags"), Some(&serde_json::json!(["vip", "new"])));
        assert_eq!(r.metadata.get("city"), Some(&Value::String("London".into())));
        assert!(!r.apply(&again), "the same row twice changes nothing");
    }
}
