-- Generated content, content templates, the publishing workflow and its history, ads and
-- ad templates.

create table learning_campaigns (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  slug text not null,
  title text not null,
  description text,
  campaign_type text not null default 'educational',
  status text not null default 'draft',
  is_template boolean not null default false,
  content jsonb not null default '{}',
  landing_page jsonb not null default '{}',
  guide jsonb not null default '{}',
  prompt text,
  model text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint learning_campaigns_status_check check (status in ('draft', 'active', 'archived'))
);
create index learning_campaigns_tenant_id_idx on learning_campaigns (tenant_id, created_at desc);
create unique index learning_campaigns_tenant_slug_key on learning_campaigns (tenant_id, slug);
select app_track_updated_at('learning_campaigns');
select app_enable_tenant_rls('learning_campaigns');

-- "Contact sales" leads from the learning center.
create table learning_sales_contacts (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  learning_campaign_id uuid references learning_campaigns (id) on delete set null,
  customer_id uuid references crm_customers (id) on delete set null,
  name text not null,
  email text not null,
  phone text,
  company text,
  message text,
  status text not null default 'new',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint learning_sales_contacts_status_check check (status in ('new', 'contacted', 'qualified', 'closed'))
);
create index learning_sales_contacts_tenant_id_idx on learning_sales_contacts (tenant_id, created_at desc);
select app_track_updated_at('learning_sales_contacts');
select app_enable_tenant_rls('learning_sales_contacts');

create table content_templates (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  content_type text not null,
  prompt_template text not null,
  structure jsonb not null default '{}',
  variables text[] not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index content_templates_tenant_id_idx on content_templates (tenant_id);
select app_track_updated_at('content_templates');
select app_enable_tenant_rls('content_templates');

create table generated_content (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  title text not null,
  content_type text not null,
  body text not null default '',
  excerpt text,
  learning_campaign_id uuid references learning_campaigns (id) on delete set null,
  template_id uuid references content_templates (id) on delete set null,
  prompt text,
  model text,
  metadata jsonb not null default '{}',
  created_by uuid references users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint generated_content_type_check check (content_type in (
    'article', 'blog_post', 'social_post', 'email', 'newsletter', 'landing_page', 'ad_copy', 'video_script', 'other'))
);
create index generated_content_tenant_id_idx on generated_content (tenant_id, created_at desc);
create index generated_content_type_idx on generated_content (content_type);
select app_track_updated_at('generated_content');
select app_enable_tenant_rls('generated_content');

create table content_workflow (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  content_id uuid not null,
  content_type text not null default 'generated_content',
  status text not null default 'draft',
  scheduled_publish_at timestamptz,
  published_at timestamptz,
  workflow_data jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint content_workflow_status_check check (status in ('draft', 'review', 'approved', 'scheduled', 'published', 'archived')),
  constraint content_workflow_scheduled_needs_time check (status <> 'scheduled' or scheduled_publish_at is not null),
  constraint content_workflow_content_key unique (content_type, content_id)
);
create index content_workflow_tenant_id_idx on content_workflow (tenant_id);
create index content_workflow_content_id_idx on content_workflow (content_id);
create index content_workflow_status_idx on content_workflow (status);
create index content_workflow_scheduled_publish_at_idx on content_workflow (scheduled_publish_at) where status = 'scheduled';
select app_track_updated_at('content_workflow');
select app_enable_tenant_rls('content_workflow');

create table content_workflow_history (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  workflow_id uuid not null references content_workflow (id) on delete cascade,
  action text not null,
  from_status text,
  to_status text not null,
  performed_by uuid references users (id) on delete set null,
  performed_at timestamptz not null default now(),
  notes text,
  metadata jsonb not null default '{}'
);
create index content_workflow_history_workflow_id_idx on content_workflow_history (workflow_id, performed_at);
select app_enable_tenant_rls('content_workflow_history');

create table ad_templates (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  platform text not null,
  ad_type text not null,
  structure jsonb not null default '{}',
  prompt_template text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index ad_templates_tenant_id_idx on ad_templates (tenant_id);
select app_track_updated_at('ad_templates');
select app_enable_tenant_rls('ad_templates');

create table ads (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  platform text not null,
  ad_type text not null,
  status text not null default 'draft',
  content jsonb not null default '{}',
  targeting jsonb not null default '{}',
  -- The seed's `budget`, in minor units of `currency`.
  budget bigint,
  currency char(3) not null default 'USD',
  schedule jsonb not null default '{}',
  scheduled_start_at timestamptz,
  scheduled_end_at timestamptz,
  template_id uuid references ad_templates (id) on delete set null,
  source_campaign_id uuid references outbound_campaigns (id) on delete set null,
  source_content_id uuid references generated_content (id) on delete set null,
  prompt text,
  model text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint ads_platform_check check (platform in ('facebook', 'instagram', 'google', 'linkedin', 'twitter', 'tiktok', 'youtube', 'other')),
  constraint ads_status_check check (status in ('draft', 'review', 'approved', 'scheduled', 'active', 'paused', 'archived')),
  constraint ads_budget_check check (budget is null or budget >= 0),
  constraint ads_schedule_order check (scheduled_end_at is null or scheduled_start_at is null or scheduled_end_at > scheduled_start_at)
);
create index ads_tenant_id_idx on ads (tenant_id, created_at desc);
create index ads_platform_idx on ads (platform);
create index ads_status_idx on ads (status);
create index ads_scheduled_start_at_idx on ads (scheduled_start_at);
select app_track_updated_at('ads');
select app_enable_tenant_rls('ads');
