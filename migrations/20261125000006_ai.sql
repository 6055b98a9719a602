-- AI personalities and their assignments to customers.

create table ai_personalities (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  description text,
  system_prompt text not null,
  model text not null default 'gpt-4o-mini',
  temperature real not null default 0.7,
  max_tokens integer not null default 1024,
  config jsonb not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint ai_personalities_temperature_check check (temperature >= 0 and temperature <= 2),
  constraint ai_personalities_max_tokens_check check (max_tokens > 0 and max_tokens <= 128000)
);
create index ai_personalities_tenant_id_idx on ai_personalities (tenant_id);
create unique index ai_personalities_tenant_name_key on ai_personalities (tenant_id, lower(name));
select app_track_updated_at('ai_personalities');
select app_enable_tenant_rls('ai_personalities');

-- A customer has at most one personality at a time; re-assigning replaces the row.
create table ai_personality_assignments (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  personality_id uuid not null references ai_personalities (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  assigned_at timestamptz not null default now(),
  assigned_by uuid references users (id) on delete set null,
  metadata jsonb not null default '{}',
  constraint ai_personality_assignments_customer_key unique (customer_id)
);
create index ai_personality_assignments_personality_id_idx on ai_personality_assignments (personality_id);
select app_enable_tenant_rls('ai_personality_assignments');
