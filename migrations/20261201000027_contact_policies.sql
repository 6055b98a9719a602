-- Frequency caps per tenant and channel: at most `max_messages` messages to one customer
-- within `window_hours`, across campaigns. A send that would break the cap ends `failed`
-- with the reason (never silently dropped); see delivery::contact_policy.
create table contact_policies (
  tenant_id uuid not null references tenants (id) on delete cascade,
  channel text not null,
  max_messages integer not null,
  window_hours integer not null,
  updated_at timestamptz not null default now(),
  primary key (tenant_id, channel),
  constraint contact_policies_channel check (channel in ('email', 'sms', 'phone')),
  constraint contact_policies_max check (max_messages between 1 and 1000),
  constraint contact_policies_window check (window_hours between 1 and 8760)
);
select app_track_updated_at('contact_policies');
select app_enable_tenant_rls('contact_policies');

-- The cap counts a customer's recent attempts across campaigns.
create index outbound_campaign_recipients_customer_attempt_idx
  on outbound_campaign_recipients (customer_id, attempted_at) where attempted_at is not null;
