-- Search hits counted as uses of knowledge entries, kept apart from the entries.
--
-- Under search traffic the count changes every second. In `knowledge_base` each change
-- wrote a new version of a row that carries a vector: a new entry in the HNSW index, and
-- the whole row, vector included, through change data capture into the lake. Here a
-- change rewrites a row of four narrow columns.
--
-- `knowledge_base.usage_count` keeps the uses counted before this migration; an entry's
-- use count is the sum of both (the API reads it so), which moves no existing row.
create table knowledge_usage (
  entry_id uuid primary key references knowledge_base (id) on delete cascade,
  tenant_id uuid not null references tenants (id) on delete cascade,
  uses bigint not null,
  updated_at timestamptz not null default now(),
  constraint knowledge_usage_uses_check check (uses >= 0)
);
create index knowledge_usage_tenant_id_idx on knowledge_usage (tenant_id);
select app_enable_tenant_rls('knowledge_usage');
