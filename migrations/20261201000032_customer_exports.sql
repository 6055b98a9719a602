-- Customer exports as jobs (issue #22): for sets too large to wait on a download, the
-- export runs on a worker and its file is kept in chunks here until downloaded or expired
-- (two days, by cleanup:old-data; an erasure cannot reach inside a file, so files are
-- kept no longer than needed).
create table customer_exports (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  format text not null,
  -- The list filters it was asked with (the query parameters of GET /customers).
  filters jsonb not null,
  status text not null default 'queued',
  rows bigint not null default 0,
  bytes bigint not null default 0,
  error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint customer_exports_format check (format in ('csv', 'parquet')),
  constraint customer_exports_status check (status in ('queued', 'running', 'done', 'failed'))
);
select app_enable_tenant_rls('customer_exports');
create index customer_exports_created_idx on customer_exports (created_at);

create table customer_export_chunks (
  export_id uuid not null references customer_exports (id) on delete cascade,
  tenant_id uuid not null references tenants (id) on delete cascade,
  seq integer not null,
  bytes bytea not null,
  primary key (export_id, seq)
);
select app_enable_tenant_rls('customer_export_chunks');
