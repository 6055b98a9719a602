-- Customer imports (CSV): one row per upload, with its progress and counts, and the rows
-- that could not be imported with why (row number, field, message: never the value, so
-- the report holds no personal data beyond what the uploader already has). The uploaded
-- file stays in `source` only until the import ends.
create table customer_imports (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  requested_by bigint references personal_access_tokens (id) on delete set null,
  file_name text,
  dry_run boolean not null default false,
  -- CSV header → target field, as resolved when the upload was accepted.
  mapping jsonb not null,
  delimiter text not null default ',',
  source bytea,
  status text not null default 'queued',
  total_rows integer not null default 0,
  -- Rows done, committed with the writes they made: a re-run resumes after them.
  processed_rows integer not null default 0,
  created_count integer not null default 0,
  updated_count integer not null default 0,
  unchanged_count integer not null default 0,
  duplicate_rows integer not null default 0,
  error_rows integer not null default 0,
  error text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  constraint customer_imports_status check (status in ('queued', 'running', 'completed', 'failed')),
  constraint customer_imports_mapping_object check (jsonb_typeof(mapping) = 'object')
);
create index customer_imports_tenant_idx on customer_imports (tenant_id, created_at desc);
select app_enable_tenant_rls('customer_imports');

create table customer_import_errors (
  tenant_id uuid not null references tenants (id) on delete cascade,
  import_id uuid not null references customer_imports (id) on delete cascade,
  -- The row as a spreadsheet numbers it: the header is row 1.
  row_number integer not null,
  field text not null,
  message text not null,
  primary key (import_id, row_number, field)
);
select app_enable_tenant_rls('customer_import_errors');
