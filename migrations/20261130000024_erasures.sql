-- The erasure log (right to erasure): what was removed about a customer, when and at whose
-- request, and how far the removal has reached the places outside this transaction (the
-- job queues in Redis, the Parquet lake). It keeps ids and counts only: never a name,
-- address or message. The customer id has no foreign key: the customer is gone.
create table erasures (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null,
  -- The personal access token that asked (null once the token is deleted).
  requested_by bigint references personal_access_tokens (id) on delete set null,
  requested_at timestamptz not null default now(),
  -- Rows removed (or detached, for orders) per table.
  removed jsonb not null default '{}',
  -- Other keys whose lake rows go too, by table and column (a conversation's messages,
  -- recipients' ids in queued jobs): {"crm_conversation_messages": {"conversation_id": [...]}}.
  lake_keys jsonb not null default '{}',
  recipient_ids uuid[] not null default '{}',
  sales_contact_ids uuid[] not null default '{}',
  queues_done_at timestamptz,
  jobs_removed integer,
  -- The WAL position after the erasure committed: the lake is rewritten once the capture
  -- has taken everything up to it (the deletes themselves included).
  lake_after_lsn pg_lsn,
  lake_done_at timestamptz,
  lake_files_rewritten integer,
  constraint erasures_customer_key unique (tenant_id, customer_id),
  constraint erasures_removed_object check (jsonb_typeof(removed) = 'object'),
  constraint erasures_lake_keys_object check (jsonb_typeof(lake_keys) = 'object')
);

create index erasures_lake_pending_idx on erasures (requested_at) where lake_done_at is null;

select app_enable_tenant_rls('erasures');
