-- Addresses and phone numbers a tenant must not contact (issue 15): entered by hand, or
-- recorded from bounces, complaints, unsubscribes and STOP replies. A send to a
-- suppressed target is not made; its recipient ends `failed` with the reason.
create table outbound_suppressions (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  -- `email` (an address, lower-cased) or `phone` (E.164; covers SMS and calls).
  channel text not null,
  target text not null,
  reason text not null default 'manual',
  note text,
  created_at timestamptz not null default now(),
  constraint outbound_suppressions_channel_check check (channel in ('email', 'phone')),
  constraint outbound_suppressions_reason_check check (reason in ('manual', 'bounce', 'complaint', 'unsubscribe', 'stop'))
);
create unique index outbound_suppressions_target_key on outbound_suppressions (tenant_id, channel, target);
create index outbound_suppressions_tenant_idx on outbound_suppressions (tenant_id, created_at desc);
select app_enable_tenant_rls('outbound_suppressions');
