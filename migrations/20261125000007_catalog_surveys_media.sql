-- Services and categories, orders (Stripe), surveys, presentations and presenters, TTS.

create table service_categories (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  slug text not null,
  description text,
  parent_id uuid references service_categories (id) on delete set null,
  display_order integer not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index service_categories_tenant_slug_key on service_categories (tenant_id, slug);
select app_track_updated_at('service_categories');
select app_enable_tenant_rls('service_categories');

create table services (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  category_id uuid references service_categories (id) on delete set null,
  name text not null,
  slug text not null,
  description text,
  price_minor bigint not null default 0,
  currency char(3) not null default 'USD',
  billing_period text not null default 'one_time',
  is_active boolean not null default true,
  features jsonb not null default '[]',
  stripe_price_id text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint services_price_check check (price_minor >= 0),
  constraint services_billing_period_check check (billing_period in ('one_time', 'monthly', 'quarterly', 'yearly'))
);
create unique index services_tenant_slug_key on services (tenant_id, slug);
create index services_category_id_idx on services (category_id);
select app_track_updated_at('services');
select app_enable_tenant_rls('services');

create table orders (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid references crm_customers (id) on delete set null,
  service_id uuid references services (id) on delete set null,
  -- Attribution hint recorded at checkout; the ROI pipeline also attributes by touches.
  campaign_id uuid references outbound_campaigns (id) on delete set null,
  order_number text not null,
  status text not null default 'pending',
  amount_minor bigint not null,
  currency char(3) not null default 'USD',
  quantity integer not null default 1,
  stripe_payment_intent_id text,
  stripe_checkout_session_id text,
  paid_at timestamptz,
  refunded_at timestamptz,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint orders_status_check check (status in ('pending', 'paid', 'failed', 'refunded', 'cancelled')),
  constraint orders_amount_check check (amount_minor >= 0),
  constraint orders_quantity_check check (quantity > 0)
);
create unique index orders_tenant_order_number_key on orders (tenant_id, order_number);
create index orders_tenant_id_idx on orders (tenant_id, created_at desc);
create index orders_customer_id_idx on orders (customer_id);
create index orders_status_idx on orders (status);
create unique index orders_stripe_payment_intent_key on orders (stripe_payment_intent_id) where stripe_payment_intent_id is not null;
select app_track_updated_at('orders');
select app_enable_tenant_rls('orders');

-- Stripe webhook events already processed (by event id), so a replay changes nothing.
create table stripe_events (
  id text primary key,
  type text not null,
  payload jsonb not null,
  processed_at timestamptz not null default now()
);

create table surveys (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  title text not null,
  slug text not null,
  description text,
  status text not null default 'draft',
  settings jsonb not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint surveys_status_check check (status in ('draft', 'active', 'closed', 'archived'))
);
create unique index surveys_tenant_slug_key on surveys (tenant_id, slug);
select app_track_updated_at('surveys');
select app_enable_tenant_rls('surveys');

create table survey_sections (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  survey_id uuid not null references surveys (id) on delete cascade,
  title text not null,
  description text,
  position integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index survey_sections_survey_id_idx on survey_sections (survey_id, position);
select app_track_updated_at('survey_sections');
select app_enable_tenant_rls('survey_sections');

create table survey_questions (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  survey_id uuid not null references surveys (id) on delete cascade,
  section_id uuid references survey_sections (id) on delete cascade,
  question_text text not null,
  question_type text not null,
  options jsonb not null default '[]',
  is_required boolean not null default false,
  position integer not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint survey_questions_type_check check (question_type in (
    'text', 'textarea', 'single_choice', 'multiple_choice', 'rating', 'scale', 'yes_no', 'email', 'number', 'date'))
);
create index survey_questions_survey_id_idx on survey_questions (survey_id, position);
create index survey_questions_section_id_idx on survey_questions (section_id);
select app_track_updated_at('survey_questions');
select app_enable_tenant_rls('survey_questions');

create table survey_responses (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  survey_id uuid not null references surveys (id) on delete cascade,
  customer_id uuid references crm_customers (id) on delete set null,
  answers jsonb not null default '{}',
  submitted_at timestamptz not null default now(),
  metadata jsonb not null default '{}',
  constraint survey_responses_answers_object check (jsonb_typeof(answers) = 'object')
);
create index survey_responses_survey_id_idx on survey_responses (survey_id, submitted_at);
create index survey_responses_customer_id_idx on survey_responses (customer_id);
select app_enable_tenant_rls('survey_responses');

create table presenters (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  bio text,
  avatar_url text,
  voice_id text,
  voice_settings jsonb not null default '{}',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index presenters_tenant_id_idx on presenters (tenant_id);
select app_track_updated_at('presenters');
select app_enable_tenant_rls('presenters');

create table presentations (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  presenter_id uuid references presenters (id) on delete set null,
  title text not null,
  slug text not null,
  description text,
  slides jsonb not null default '[]',
  audio_url text,
  status text not null default 'draft',
  is_template boolean not null default false,
  view_count bigint not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint presentations_status_check check (status in ('draft', 'published', 'archived'))
);
create unique index presentations_tenant_slug_key on presentations (tenant_id, slug);
create index presentations_presenter_id_idx on presentations (presenter_id);
select app_track_updated_at('presentations');
select app_enable_tenant_rls('presentations');

create table tts_requests (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  text text not null,
  voice_id text not null,
  model text,
  status text not null default 'pending',
  audio_url text,
  audio_bytes bigint,
  error text,
  source_type text,
  source_id uuid,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  constraint tts_requests_status_check check (status in ('pending', 'processing', 'completed', 'failed')),
  constraint tts_requests_text_length check (char_length(text) between 1 and 10000)
);
create index tts_requests_tenant_id_idx on tts_requests (tenant_id, created_at desc);
create index tts_requests_status_idx on tts_requests (status);
select app_track_updated_at('tts_requests');
select app_enable_tenant_rls('tts_requests');
