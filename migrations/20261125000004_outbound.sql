-- Outbound: e-mail and SMS templates, phone scripts, campaigns and their recipients.

create table email_templates (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  subject text not null,
  html_body text not null,
  text_body text,
  variables text[] not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index email_templates_tenant_id_idx on email_templates (tenant_id);
select app_track_updated_at('email_templates');
select app_enable_tenant_rls('email_templates');

create table sms_templates (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  body text not null,
  variables text[] not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint sms_templates_body_length check (char_length(body) <= 1600)
);
create index sms_templates_tenant_id_idx on sms_templates (tenant_id);
select app_track_updated_at('sms_templates');
select app_enable_tenant_rls('sms_templates');

create table phone_scripts (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  script text not null,
  voice_id text,
  variables text[] not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index phone_scripts_tenant_id_idx on phone_scripts (tenant_id);
select app_track_updated_at('phone_scripts');
select app_enable_tenant_rls('phone_scripts');

create table outbound_campaigns (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  type text not null,
  status text not null default 'draft',
  email_template_id uuid references email_templates (id) on delete set null,
  sms_template_id uuid references sms_templates (id) on delete set null,
  phone_script_id uuid references phone_scripts (id) on delete set null,
  scheduled_at timestamptz,
  started_at timestamptz,
  completed_at timestamptz,
  -- Money in minor units of `currency`; used by the ROI pipeline.
  fixed_cost_minor bigint not null default 0,
  currency char(3) not null default 'USD',
  config jsonb not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint outbound_campaigns_type_check check (type in ('email', 'sms', 'phone')),
  constraint outbound_campaigns_status_check check (status in ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
  constraint outbound_campaigns_fixed_cost_check check (fixed_cost_minor >= 0)
);
create index outbound_campaigns_tenant_id_idx on outbound_campaigns (tenant_id, created_at desc);
create index outbound_campaigns_type_idx on outbound_campaigns (type);
create index outbound_campaigns_status_idx on outbound_campaigns (status);
create index outbound_campaigns_scheduled_at_idx on outbound_campaigns (scheduled_at) where scheduled_at is not null;
select app_track_updated_at('outbound_campaigns');
select app_enable_tenant_rls('outbound_campaigns');

create table outbound_campaign_recipients (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  campaign_id uuid not null references outbound_campaigns (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  status text not null default 'pending',
  provider_message_id text,
  error text,
  attempts integer not null default 0,
  queued_at timestamptz,
  sent_at timestamptz,
  delivered_at timestamptz,
  opened_at timestamptz,
  clicked_at timestamptz,
  replied_at timestamptz,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint outbound_campaign_recipients_status_check check (status in (
    'pending', 'queued', 'sent', 'delivered', 'opened', 'clicked', 'replied',
    'answered', 'voicemail', 'failed', 'bounced', 'unsubscribed')),
  constraint outbound_campaign_recipients_campaign_customer_key unique (campaign_id, customer_id)
);
create index outbound_campaign_recipients_campaign_id_idx on outbound_campaign_recipients (campaign_id, status);
create index outbound_campaign_recipients_customer_id_idx on outbound_campaign_recipients (customer_id);
create index outbound_campaign_recipients_status_idx on outbound_campaign_recipients (status);
create unique index outbound_campaign_recipients_provider_message_id_key
  on outbound_campaign_recipients (provider_message_id) where provider_message_id is not null;
select app_track_updated_at('outbound_campaign_recipients');
select app_enable_tenant_rls('outbound_campaign_recipients');
