-- Per-customer scores the analytics pipelines compute (issue #6) and the AI context reads.
-- One current row per customer; each run replaces it and records when it was computed
-- and the point in time its inputs describe (as_of).
create table customer_engagement_scores (
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  score numeric(5, 2) not null,
  -- Per-channel parts of the score, e.g. {"email": 31.5, "web": 12.0}.
  components jsonb not null default '{}',
  as_of timestamptz not null,
  computed_at timestamptz not null default now(),
  primary key (customer_id),
  constraint customer_engagement_scores_range check (score >= 0 and score <= 100)
);
create index customer_engagement_scores_tenant_idx on customer_engagement_scores (tenant_id, score desc);
select app_enable_tenant_rls('customer_engagement_scores');

create table customer_predictive_scores (
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  -- Probability of a paid order in the next 90 days.
  probability double precision not null,
  -- The features that moved this customer's score most: [{"feature", "contribution"}].
  top_features jsonb not null default '[]',
  model_version text not null,
  as_of timestamptz not null,
  computed_at timestamptz not null default now(),
  primary key (customer_id),
  constraint customer_predictive_scores_range check (probability >= 0 and probability <= 1)
);
create index customer_predictive_scores_tenant_idx on customer_predictive_scores (tenant_id, probability desc);
select app_enable_tenant_rls('customer_predictive_scores');
