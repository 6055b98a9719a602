//! A captured table's columns, from the catalog (snapshot) or a pgoutput Relation message
//! (stream), and the Arrow schema of its lake files.

use std::{collections::HashMap, sync::Arc};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlx::PgPool;

use crate::{
    error::IngestError,
    pgtype::{Kind, TypeInfo, builtin_kind, catalog_kind},
};

/// Change metadata columns every lake file carries after the table's own columns.
pub const LSN: &str = "_lsn";
pub const SEQ: &str = "_seq";
pub const OP: &str = "_op";
pub const COMMIT_TS: &str = "_commit_ts";
pub const XID: &str = "_xid";
pub const UNCHANGED: &str = "_unchanged";

/// What a lake row records: `_op` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read by the initial snapshot.
    Snapshot,
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Snapshot => "r",
            Op::Insert => "i",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub kind: Kind,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub table: String,
    pub columns: Vec<Column>,
}

impl TableSchema {
    pub fn keys(&self) -> Vec<String> {
        self.columns.iter().filter(|c| c.key).map(|c| c.name.clone()).collect()
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> =
            self.columns.iter().map(|c| Field::new(c.name.as_str(), c.kind.data_type(), true)).collect();
        fields.extend(meta_fields());
        Arc::new(Schema::new(fields))
    }
}

pub fn meta_fields() -> Vec<Field> {
    vec![
        Field::new(LSN, DataType::UInt64, false),
        Field::new(SEQ, DataType::UInt32, false),
        Field::new(OP, DataType::Utf8, false),
        Field::new(COMMIT_TS, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new(XID, DataType::UInt32, true),
        Field::new(UNCHANGED, DataType::Utf8, true),
    ]
}

/// The types Postgres did not build in (pgvector's `vector`, enums, domains, arrays of
/// those), read from `pg_type` once and again when an unknown OID shows up.
#[derive(Debug, Default)]
pub struct TypeCatalog {
    types: HashMap<u32, TypeInfo>,
}

impl TypeCatalog {
    #[tracing::instrument(skip_all)]
    pub async fn load(pool: &PgPool) -> Result<Self, IngestError> {
        let rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
            "select oid::int8, typname::text, typtype::text, typelem::int8, typbasetype::int8 from pg_type \
             where oid >= 10000",
        )
        .fetch_all(pool)
        .await?;
        let types = rows
            .into_iter()
            .map(|(oid, name, typtype, elem, base)| {
                let info = TypeInfo {
                    name,
                    typtype: typtype.chars().next().unwrap_or('b'),
                    elem: elem as u32,
                    base: base as u32,
                };
                (oid as u32, info)
            })
            .collect();
        Ok(Self { types })
    }

    pub fn knows(&self, oid: u32) -> bool {
        builtin_kind(oid, -1).is_some() || self.types.contains_key(&oid)
    }

    pub fn kind(&self, oid: u32, typmod: i32) -> Kind {
        if let Some(kind) = builtin_kind(oid, typmod) {
            return kind;
        }
        match self.types.get(&oid) {
            Some(info) => catalog_kind(info, &|inner| Some(self.kind(inner, -1))),
            None => Kind::Text,
        }
    }
}

/// Reads a table's columns and primary key from the catalog (inside the snapshot's
/// transaction when `conn` is one).
#[tracing::instrument(skip(conn, types))]
pub async fn from_catalog(
    conn: &mut sqlx::PgConnection,
    types: &TypeCatalog,
    table: &str,
) -> Result<TableSchema, IngestError> {
    let rows: Vec<(String, i64, i32, bool)> = sqlx::query_as(
        "select a.attname::text, a.atttypid::int8, a.atttypmod, \
                coalesce(a.attnum = any(i.indkey), false) \
         from pg_attribute a \
         left join pg_index i on i.indrelid = a.attrelid and i.indisprimary \
         where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped \
         order by a.attnum",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(IngestError::MissingTable(table.to_string()));
    }
    let columns = rows
        .into_iter()
        .map(|(name, oid, typmod, key)| Column {
            kind: types.kind(oid as u32, typmod),
            name,
            type_oid: oid as u32,
            typmod,
            key,
        })
        .collect();
    Ok(TableSchema { table: table.to_string(), columns })
}
