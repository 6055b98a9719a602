-- CRM: customers, conversations and their messages, customer FAQs, pending questions.

create table crm_customers (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  slug text not null,
  email text,
  phone text,
  business_context jsonb not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint crm_customers_slug_format check (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
  constraint crm_customers_business_context_object check (jsonb_typeof(business_context) = 'object')
);
create index crm_customers_tenant_id_idx on crm_customers (tenant_id, created_at desc, id desc);
create unique index crm_customers_tenant_slug_key on crm_customers (tenant_id, slug);
create unique index crm_customers_tenant_email_key on crm_customers (tenant_id, lower(email)) where email is not null;
create index crm_customers_email_idx on crm_customers (lower(email));
select app_track_updated_at('crm_customers');
select app_enable_tenant_rls('crm_customers');

create table crm_conversations (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid references crm_customers (id) on delete cascade,
  channel text not null default 'chat',
  status text not null default 'active',
  outcome text,
  summary text,
  followup_scheduled_at timestamptz,
  ended_at timestamptz,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint crm_conversations_channel_check check (channel in ('chat', 'email', 'sms', 'phone', 'web', 'ai')),
  constraint crm_conversations_status_check check (status in ('active', 'ended', 'archived'))
);
create index crm_conversations_tenant_id_idx on crm_conversations (tenant_id, created_at desc);
create index crm_conversations_customer_id_idx on crm_conversations (customer_id, created_at desc);
create index crm_conversations_status_idx on crm_conversations (status);
select app_track_updated_at('crm_conversations');
select app_enable_tenant_rls('crm_conversations');

-- tenant_id is denormalised from the conversation so RLS needs no join.
create table crm_conversation_messages (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  conversation_id uuid not null references crm_conversations (id) on delete cascade,
  role text not null,
  content text not null,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint crm_conversation_messages_role_check check (role in ('user', 'assistant', 'system', 'agent', 'customer'))
);
create index crm_conversation_messages_conversation_id_idx on crm_conversation_messages (conversation_id, created_at, id);
create index crm_conversation_messages_created_at_idx on crm_conversation_messages (created_at);
select app_enable_tenant_rls('crm_conversation_messages');

create table crm_customer_faqs (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  question text not null,
  answer text not null,
  source text not null default 'manual',
  helpful_count integer not null default 0,
  not_helpful_count integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint crm_customer_faqs_counts_check check (helpful_count >= 0 and not_helpful_count >= 0)
);
create index crm_customer_faqs_tenant_id_idx on crm_customer_faqs (tenant_id);
create index crm_customer_faqs_customer_id_idx on crm_customer_faqs (customer_id);
select app_track_updated_at('crm_customer_faqs');
select app_enable_tenant_rls('crm_customer_faqs');

create table crm_pending_questions (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  question text not null,
  context jsonb not null default '{}',
  status text not null default 'pending',
  answered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint crm_pending_questions_status_check check (status in ('pending', 'answered', 'dismissed'))
);
create index crm_pending_questions_tenant_id_idx on crm_pending_questions (tenant_id);
create index crm_pending_questions_customer_id_idx on crm_pending_questions (customer_id);
create index crm_pending_questions_status_idx on crm_pending_questions (status);
select app_track_updated_at('crm_pending_questions');
select app_enable_tenant_rls('crm_pending_questions');
