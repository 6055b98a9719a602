//! The customers an import has in view and how each row finds its customer. Pure: the
//! database only fills the book with the existing customers a chunk of rows can match.
//!
//! Matching: a row with an e-mail matches the customer with that e-mail (any letter case);
//! failing that, a customer with the row's phone and no e-mail of its own (so a phone
//! number shared by two people never merges two addresses). A row without an e-mail
//! matches by phone (the oldest customer with it). A row matching nobody creates a
//! customer, which later rows of the same file then match: a file never creates a
//! customer twice, and importing it again creates none.

use std::collections::{HashMap, HashSet};

use super::rows::{Key, Record, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The row made a new customer.
    Created,
    /// The row matched a customer and changed it.
    Updated,
    /// The row matched a customer and changed nothing.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Record,
    /// Loaded from the database (else created by this import).
    pub existing: bool,
    /// Changed by a row since it was loaded.
    pub changed: bool,
}

#[derive(Debug, Default)]
pub struct Book {
    entries: Vec<Entry>,
    by_email: HashMap<String, usize>,
    by_phone: HashMap<String, usize>,
    /// Keys of every row taken so far in the file (for the duplicate count).
    seen: HashSet<Key>,
    /// Customers created and existing ones changed, since the book began (a dry run's
    /// counts: it keeps every customer, so counting them again each chunk would grow with
    /// the file).
    created: usize,
    updated: usize,
}

impl Book {
    /// Whether the book already knows a customer by `key` (no need to ask the database).
    pub fn knows(&self, key: &Key) -> bool {
        match key {
            Key::Email(e) => self.by_email.contains_key(e),
            Key::Phone(p) => self.by_phone.contains_key(p),
        }
    }

    /// Adds a customer read from the database; a key already known keeps its customer.
    pub fn add_existing(&mut self, record: Record) {
        let i = self.entries.len();
        self.entries.push(Entry { record, existing: true, changed: false });
        self.index(i);
    }

    fn index(&mut self, i: usize) {
        let r = &self.entries[i].record;
        if let Some(e) = &r.email {
            self.by_email.entry(e.to_lowercase()).or_insert(i);
        }
        if let Some(p) = &r.phone {
            self.by_phone.entry(p.clone()).or_insert(i);
        }
    }

    fn find(&self, row: &Row) -> Option<usize> {
        let keys = row.keys();
        let by_email = keys.iter().find_map(|k| match k {
            Key::Email(e) => Some(self.by_email.get(e).copied()),
            Key::Phone(_) => None,
        });
        let phone = keys.iter().find_map(|k| match k {
            Key::Phone(p) => self.by_phone.get(p).copied(),
            Key::Email(_) => None,
        });
        match by_email {
            Some(Some(i)) => Some(i),
            // The row has an e-mail nobody has: only a customer without one may be it.
            Some(None) => phone.filter(|i| self.entries[*i].record.email.is_none()),
            None => phone,
        }
    }

    /// Applies a checked row; returns what it did and whether its key came earlier in
    /// the file (a duplicate row, merged into the same customer). A row that would create
    /// a customer without a name is refused (and changes nothing).
    pub fn take(&mut self, row: &Row) -> Result<(Taken, bool), &'static str> {
        let found = self.find(row);
        if found.is_none() && row.name.is_none() {
            return Err("is required to create a customer (no customer has this e-mail or phone)");
        }
        let keys = row.keys();
        let duplicate = keys.iter().any(|k| self.seen.contains(k));
        self.seen.extend(keys);
        let taken = match found {
            Some(i) => {
                let entry = &mut self.entries[i];
                let changed = entry.record.apply(row);
                if changed && entry.existing && !entry.changed {
                    self.updated += 1;
                }
                entry.changed |= changed;
                let taken = match (entry.existing, changed) {
                    (false, _) => Taken::Created,
                    (true, true) => Taken::Updated,
                    (true, false) => Taken::Unchanged,
                };
                self.index(i);
                taken
            }
            None => {
                let i = self.entries.len();
                self.entries.push(Entry { record: Record::new(row), existing: false, changed: true });
                self.index(i);
                self.created += 1;
                Taken::Created
            }
        };
        Ok((taken, duplicate))
    }

    /// The customers to create and the existing ones to update.
    pub fn outcome(&self) -> (Vec<&Record>, Vec<&Record>) {
        let created = self.entries.iter().filter(|e| !e.existing).map(|e| &e.record).collect();
        let updated = self.entries.iter().filter(|e| e.existing && e.changed).map(|e| &e.record).collect();
        (created, updated)
    }

    pub fn created(&self) -> usize {
        self.created
    }

    pub fn updated(&self) -> usize {
        self.updated
    }

    /// Forgets the customers (once written) but remembers the keys seen, so duplicates
    /// across chunks are still counted.
    pub fn forget_customers(&mut self) {
        self.entries.clear();
        self.by_email.clear();
        self.by_phone.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        customers::import::{mapping::Mapping, rows::parse},
        error::FieldErrors,
    };

    fn rows(lines: &[&[&str]]) -> Vec<Row> {
        let headers: Vec<String> = ["Name", "Email", "Phone"].iter().map(|s| s.to_string()).collect();
        let m = Mapping::resolve(&headers, &BTreeMap::new(), &mut FieldErrors::default());
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| parse(i as u32 + 2, &csv::StringRecord::from(l.to_vec()), &m).unwrap())
            .collect()
    }

    fn existing(name: &str, email: Option<&str>, phone: Option<&str>) -> Record {
        Record {
            id: Some(uuid::Uuid::now_v7()),
            row: 0,
            name: name.into(),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
            timezone: None,
            business_context: Default::default(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn a_file_never_creates_a_customer_twice() {
        let mut book = Book::default();
        let r = rows(&[
            &["Ada", "ada@example.com", ""],
            &["Ada L.", "ADA@example.com", "+15550100123"],
            &["", "", "+15550100123"],
            &["Bob", "", "+15550100999"],
        ]);
        let taken: Vec<(Taken, bool)> = r.iter().map(|row| book.take(row).unwrap()).collect();
        assert_eq!(
            taken,
            vec![(Taken::Created, false), (Taken::Created, true), (Taken::Created, true), (Taken::Created, false)]
        );
        let (created, updated) = book.outcome();
        assert_eq!(created.len(), 2);
        assert_eq!((book.created(), book.updated()), (2, 0));
        assert!(updated.is_empty());
        assert_eq!(created[0].name, "Ada L.");
        assert_eq!(created[0].phone.as_deref(), Some("+15550100123"));
    }

    #[test]
    fn rows_match_existing_customers_by_email_then_phone() {
        let mut book = Book::default();
        book.add_existing(existing("Ada", Some("Ada@Example.com"), None));
        book.add_existing(existing("Shared", Some("shared@example.com"), Some("+15550100777")));
        book.add_existing(existing("Phone only", None, Some("+15550100888")));
        let r = rows(&[
            &["Ada", "ada@example.com", ""],
            &["New", "new@example.com", "+15550100777"],
            &["Phone person", "phone@example.com", "+15550100888"],
            &["", "", "+15550100777"],
        ]);
        let taken: Vec<Taken> = r.iter().map(|row| book.take(row).unwrap().0).collect();
        assert_eq!(taken, vec![Taken::Unchanged, Taken::Created, Taken::Updated, Taken::Unchanged]);
        let (created, updated) = book.outcome();
        assert_eq!(created.len(), 1, "a shared phone does not merge two addresses");
        assert_eq!((book.created(), book.updated()), (1, 1));
        assert_eq!(updated[0].email.as_deref(), Some("phone@example.com"), "a phone-only customer gains the address");
    }

    #[test]
    fn a_nameless_row_updates_but_never_creates() {
        let mut book = Book::default();
        book.add_existing(existing("Ada", Some("ada@example.com"), None));
        let r = rows(&[&["", "ada@example.com", "+15550100123"], &["", "nobody@example.com", ""]]);
        assert_eq!(book.take(&r[0]), Ok((Taken::Updated, false)));
        assert!(book.take(&r[1]).is_err());
        assert_eq!(book.outcome().0.len(), 0);
    }
}
