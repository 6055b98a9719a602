-- What the analytics pipelines (issue #6) write and the dashboards read. Every table is
-- a read model: a batch run replaces a tenant's rows in one transaction, the watch run
-- replaces the rows of the customers and campaigns the change feed touched.

-- One row per pipeline run: what it read (the lake's durable LSN), for which point in
-- time, how long it took. Platform-level (no tenant): a run covers every tenant.
create table pipeline_runs (
  id uuid primary key default uuidv7(),
  pipeline text not null,
  mode text not null,
  as_of timestamptz not null,
  input_lsn text not null,
  started_at timestamptz not null,
  duration_ms bigint not null,
  rows_written bigint not null,
  details jsonb not null default '{}',
  constraint pipeline_runs_pipeline_check check (pipeline in ('engagement', 'roi', 'predictive', 'analytics')),
  constraint pipeline_runs_mode_check check (mode in ('batch', 'watch'))
);
create index pipeline_runs_pipeline_idx on pipeline_runs (pipeline, started_at desc);

-- Cost and attributed revenue per campaign. Money in minor units of the campaign's
-- currency; linear attribution splits an order into integer parts that sum to it.
create table campaign_roi (
  tenant_id uuid not null references tenants (id) on delete cascade,
  campaign_id uuid not null references outbound_campaigns (id) on delete cascade,
  channel text not null,
  currency char(3) not null,
  sends bigint not null,
  unit_cost_minor bigint not null,
  send_cost_minor bigint not null,
  fixed_cost_minor bigint not null,
  cost_minor bigint not null,
  last_touch_orders bigint not null,
  last_touch_revenue_minor bigint not null,
  last_touch_roi double precision,
  linear_orders double precision not null,
  linear_revenue_minor bigint not null,
  linear_roi double precision,
  window_days integer not null,
  as_of timestamptz not null,
  computed_at timestamptz not null default now(),
  primary key (campaign_id)
);
create index campaign_roi_tenant_idx on campaign_roi (tenant_id);
select app_enable_tenant_rls('campaign_roi');

-- Trained predictive models: version, coefficients and validation metrics.
create table predictive_models (
  version text primary key,
  trained_at timestamptz not null default now(),
  as_of timestamptz not null,
  horizon_days integer not null,
  features jsonb not null,
  coefficients jsonb not null,
  intercept double precision not null,
  metrics jsonb not null
);

-- Per day and dimension counts; an API date range sums days.
create table analytics_daily_activity (
  tenant_id uuid not null references tenants (id) on delete cascade,
  day date not null,
  activity_type text not null,
  channel text not null,
  subject_type text not null,
  category text not null,
  events bigint not null,
  customers bigint not null,
  value_minor bigint not null,
  as_of timestamptz not null
);
create index analytics_daily_activity_idx on analytics_daily_activity (tenant_id, day);
select app_enable_tenant_rls('analytics_daily_activity');

create table analytics_daily_orders (
  tenant_id uuid not null references tenants (id) on delete cascade,
  day date not null,
  service_id uuid,
  service_name text not null,
  category text not null,
  currency char(3) not null,
  orders bigint not null,
  paid_orders bigint not null,
  revenue_minor bigint not null,
  refunded_orders bigint not null,
  customers bigint not null,
  as_of timestamptz not null
);
create index analytics_daily_orders_idx on analytics_daily_orders (tenant_id, day);
select app_enable_tenant_rls('analytics_daily_orders');

create table analytics_daily_campaigns (
  tenant_id uuid not null references tenants (id) on delete cascade,
  day date not null,
  campaign_id uuid not null,
  campaign_name text not null,
  channel text not null,
  sent bigint not null,
  delivered bigint not null,
  opened bigint not null,
  clicked bigint not null,
  replied bigint not null,
  bounced bigint not null,
  unsubscribed bigint not null,
  conversions bigint not null,
  revenue_minor bigint not null,
  as_of timestamptz not null
);
create index analytics_daily_campaigns_idx on analytics_daily_campaigns (tenant_id, day);
select app_enable_tenant_rls('analytics_daily_campaigns');

create table analytics_daily_customers (
  tenant_id uuid not null references tenants (id) on delete cascade,
  day date not null,
  new_customers bigint not null,
  active_customers bigint not null,
  conversations bigint not null,
  messages bigint not null,
  as_of timestamptz not null
);
create index analytics_daily_customers_idx on analytics_daily_customers (tenant_id, day);
select app_enable_tenant_rls('analytics_daily_customers');

-- Learning content: reads and votes per knowledge entry or article, all time as of the run.
create table analytics_content (
  tenant_id uuid not null references tenants (id) on delete cascade,
  subject_type text not null,
  subject_id uuid not null,
  title text not null,
  category text not null,
  views bigint not null,
  readers bigint not null,
  helpful bigint not null,
  not_helpful bigint not null,
  as_of timestamptz not null,
  primary key (tenant_id, subject_type, subject_id)
);
select app_enable_tenant_rls('analytics_content');
