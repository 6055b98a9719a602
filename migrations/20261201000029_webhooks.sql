-- Outgoing webhooks. Tenants subscribe endpoints to event types; the outbox builder
-- (pipelines::webhooks) turns the lake's change feed into events, one row per event, and
-- one delivery per subscribed endpoint, in the transaction that advances its cursor;
-- workers deliver them signed as the Standard Webhooks spec says (delivery::webhooks).
create table webhook_endpoints (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  url text not null,
  description text,
  event_types text[] not null,
  -- `whsec_` + base64 of 32 random bytes: the HMAC key deliveries are signed with.
  secret text not null,
  enabled boolean not null default true,
  disabled_at timestamptz,
  disabled_reason text,
  -- The first failed attempt since the last success (null while deliveries succeed).
  failing_since timestamptz,
  -- One worker delivers an endpoint at a time (a lease, so a dead worker lets go).
  busy_until timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint webhook_endpoints_url check (length(url) between 1 and 2048),
  constraint webhook_endpoints_types check (cardinality(event_types) between 1 and 32)
);
select app_track_updated_at('webhook_endpoints');
select app_enable_tenant_rls('webhook_endpoints');
create index webhook_endpoints_tenant_idx on webhook_endpoints (tenant_id, created_at);

create table webhook_events (
  -- The `webhook-id` receivers dedupe on: derived from the change's position in the lake
  -- (LSN, sequence) and the event type, so a rebuilt round yields the same ids.
  id text primary key,
  tenant_id uuid not null references tenants (id) on delete cascade,
  type text not null,
  -- Whose personal data the payload holds: an erasure deletes the events by it.
  customer_id uuid,
  payload jsonb not null,
  occurred_at timestamptz not null,
  created_at timestamptz not null default now()
);
select app_enable_tenant_rls('webhook_events');
create index webhook_events_customer_idx on webhook_events (customer_id) where customer_id is not null;
create index webhook_events_created_idx on webhook_events (created_at);

create table webhook_deliveries (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
  event_id text not null references webhook_events (id) on delete cascade,
  status text not null default 'pending',
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz,
  last_status_code integer,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  constraint webhook_deliveries_status check (status in ('pending', 'delivered', 'failed')),
  constraint webhook_deliveries_once unique (endpoint_id, event_id)
);
select app_enable_tenant_rls('webhook_deliveries');
create index webhook_deliveries_due_idx on webhook_deliveries (endpoint_id, next_attempt_at) where status = 'pending';
create index webhook_deliveries_log_idx on webhook_deliveries (endpoint_id, created_at desc);
create index webhook_deliveries_event_idx on webhook_deliveries (event_id);

-- Every attempt, for the endpoint's delivery log.
create table webhook_attempts (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
  attempted_at timestamptz not null default now(),
  status_code integer,
  error text,
  -- The first KiB of the receiver's answer, control characters removed.
  response text,
  duration_ms integer not null
);
select app_enable_tenant_rls('webhook_attempts');
create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, attempted_at);

-- How far into the lake the outbox builder has turned changes into events. One row;
-- builders advance it with a compare-and-set, so two never commit the same round.
create table webhook_outbox_cursor (
  id boolean primary key default true,
  lsn bigint not null,
  updated_at timestamptz not null default now(),
  constraint webhook_outbox_cursor_one check (id)
);
