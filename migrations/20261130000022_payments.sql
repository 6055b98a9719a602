-- Payments through Stripe: one Stripe customer per CRM customer and tenant, the Stripe
-- plan each recurring service is sold at, subscriptions kept in step by the webhook,
-- renewals as paid orders (so revenue counts them), and the refunds made through the API.

create table stripe_customers (
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  stripe_customer_id text not null,
  created_at timestamptz not null default now(),
  primary key (tenant_id, customer_id)
);
create unique index stripe_customers_stripe_id_key on stripe_customers (stripe_customer_id);
select app_enable_tenant_rls('stripe_customers');

-- `stripe_price_id` (existing) holds the Stripe plan; this says which price, currency and
-- period it was created for, so a price change makes a new plan instead of billing the old.
alter table services add column stripe_price_for text;

create table subscriptions (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  service_id uuid references services (id) on delete set null,
  stripe_subscription_id text,
  status text not null default 'pending',
  amount_minor bigint not null,
  currency char(3) not null,
  billing_period text not null,
  cancel_at_period_end boolean not null default false,
  current_period_end timestamptz,
  canceled_at timestamptz,
  ended_at timestamptz,
  -- `created` of the newest Stripe event applied: an older event never overwrites a newer.
  stripe_event_at timestamptz,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint subscriptions_status_check check (status in ('pending', 'incomplete', 'incomplete_expired',
    'trialing', 'active', 'past_due', 'unpaid', 'canceled', 'paused')),
  constraint subscriptions_amount_check check (amount_minor >= 0),
  constraint subscriptions_billing_period_check check (billing_period in ('monthly', 'quarterly', 'yearly'))
);
create unique index subscriptions_stripe_id_key on subscriptions (stripe_subscription_id);
create index subscriptions_tenant_customer_idx on subscriptions (tenant_id, customer_id, created_at desc);
create index subscriptions_tenant_status_idx on subscriptions (tenant_id, status);
select app_track_updated_at('subscriptions');
select app_enable_tenant_rls('subscriptions');

-- A renewal (a paid subscription invoice) is an order of its own.
alter table orders add column subscription_id uuid references subscriptions (id) on delete set null;
alter table orders add column stripe_invoice_id text;
create unique index orders_stripe_invoice_key on orders (stripe_invoice_id);

create table order_refunds (
  stripe_refund_id text primary key,
  tenant_id uuid not null references tenants (id) on delete cascade,
  order_id uuid not null references orders (id) on delete cascade,
  amount_minor bigint not null,
  created_at timestamptz not null default now(),
  constraint order_refunds_amount_check check (amount_minor > 0)
);
create index order_refunds_order_idx on order_refunds (order_id);
select app_enable_tenant_rls('order_refunds');
