-- Segments (issue #21): saved audiences as a typed rule (delivery::segments), evaluated in
-- Postgres. A campaign may take its recipients from one, resolved when it starts.
create table segments (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  description text,
  rules jsonb not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint segments_name_length check (length(name) between 1 and 200)
);
create unique index segments_tenant_name_key on segments (tenant_id, lower(name));
select app_track_updated_at('segments');
select app_enable_tenant_rls('segments');

alter table outbound_campaigns add column segment_id uuid references segments (id) on delete set null;
create index outbound_campaigns_segment_idx on outbound_campaigns (segment_id) where segment_id is not null;
