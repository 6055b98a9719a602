-- Training: courses of lessons built from the knowledge base, and each customer's
-- progress through them (the seed's /api/v1/training family).

create table training_modules (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  title text not null,
  slug text not null,
  description text,
  -- Ordered lessons: [{"title", "content", "knowledge_id"?}]
  lessons jsonb not null default '[]',
  status text not null default 'draft',
  position integer not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint training_modules_status_check check (status in ('draft', 'published', 'archived')),
  constraint training_modules_lessons_array check (jsonb_typeof(lessons) = 'array')
);
create unique index training_modules_tenant_slug_key on training_modules (tenant_id, slug);
select app_track_updated_at('training_modules');
select app_enable_tenant_rls('training_modules');

create table training_progress (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  module_id uuid not null references training_modules (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  completed_lessons integer[] not null default '{}',
  completed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint training_progress_module_customer_key unique (module_id, customer_id)
);
create index training_progress_customer_id_idx on training_progress (customer_id);
select app_track_updated_at('training_progress');
select app_enable_tenant_rls('training_progress');
