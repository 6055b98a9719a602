-- Consent per customer and channel (opt-in or opt-out, with its source and time), and a
-- tenant's choice to send on a channel only to customers who opted in. A contact policy
-- may now require consent without a frequency cap (both cap columns null) or have both.
create table customer_consents (
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  channel text not null,
  granted boolean not null,
  source text not null,
  recorded_at timestamptz not null default now(),
  primary key (tenant_id, customer_id, channel),
  constraint customer_consents_channel check (channel in ('email', 'sms', 'phone'))
);
select app_enable_tenant_rls('customer_consents');

alter table contact_policies
  add column require_consent boolean not null default false,
  alter column max_messages drop not null,
  alter column window_hours drop not null,
  add constraint contact_policies_cap_whole check ((max_messages is null) = (window_hours is null));
