-- Knowledge base (with pgvector embedding and full-text search), FAQ categories, votes,
-- industries, articles.

create table industries (
  id uuid primary key default uuidv7(),
  code text not null,
  name text not null,
  parent_code text,
  description text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint industries_code_key unique (code)
);
comment on table industries is 'Reference data shared by all tenants (NAICS-like codes); not tenant-owned.';
select app_track_updated_at('industries');

create table faq_categories (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  name text not null,
  slug text not null,
  parent_id uuid references faq_categories (id) on delete set null,
  display_order integer not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint faq_categories_not_own_parent check (parent_id is null or parent_id <> id)
);
create index faq_categories_tenant_id_idx on faq_categories (tenant_id);
create index faq_categories_parent_id_idx on faq_categories (parent_id);
create unique index faq_categories_tenant_slug_key on faq_categories (tenant_id, slug);
select app_track_updated_at('faq_categories');
select app_enable_tenant_rls('faq_categories');

create table knowledge_base (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  title text not null,
  content text not null,
  category text,
  subcategory text,
  faq_category_id uuid references faq_categories (id) on delete set null,
  industry_codes text[] not null default '{}',
  embedding_status text not null default 'pending',
  embedding vector(384),
  embedding_model text,
  embedded_at timestamptz,
  is_public boolean not null default false,
  allowed_agents text[] not null default '{}',
  source text not null default 'manual',
  source_url text,
  validation_status text not null default 'unvalidated',
  validated_at timestamptz,
  validated_by uuid references users (id) on delete set null,
  usage_count bigint not null default 0,
  helpful_count integer not null default 0,
  not_helpful_count integer not null default 0,
  tags text[] not null default '{}',
  metadata jsonb not null default '{}',
  created_by uuid references users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  search_vector tsvector generated always as (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(category, '') || ' ' || coalesce(subcategory, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(content, '')), 'C')
  ) stored,
  constraint knowledge_base_embedding_status_check check (embedding_status in ('pending', 'processing', 'completed', 'failed')),
  constraint knowledge_base_validation_status_check check (validation_status in ('unvalidated', 'pending', 'validated', 'rejected')),
  constraint knowledge_base_source_check check (source in ('manual', 'import', 'ai_generated', 'scraped', 'conversation', 'faq')),
  constraint knowledge_base_counts_check check (usage_count >= 0 and helpful_count >= 0 and not_helpful_count >= 0),
  constraint knowledge_base_embedding_model check (embedding is null or embedding_model is not null)
);
create index knowledge_base_tenant_id_idx on knowledge_base (tenant_id, created_at desc);
create index knowledge_base_category_idx on knowledge_base (tenant_id, category, subcategory);
create index knowledge_base_embedding_status_idx on knowledge_base (embedding_status);
create index knowledge_base_validation_status_idx on knowledge_base (validation_status);
create index knowledge_base_source_idx on knowledge_base (source);
create index knowledge_base_public_idx on knowledge_base (is_public) where is_public;
create index knowledge_base_tags_idx on knowledge_base using gin (tags);
create index knowledge_base_industry_codes_idx on knowledge_base using gin (industry_codes);
create index knowledge_base_search_vector_idx on knowledge_base using gin (search_vector);
create index knowledge_base_embedding_idx on knowledge_base using hnsw (embedding vector_cosine_ops);
select app_track_updated_at('knowledge_base');

-- Public entries are readable by every tenant (the seed's `is_public`); writes stay private.
alter table knowledge_base enable row level security;
alter table knowledge_base force row level security;
create policy tenant_isolation on knowledge_base
  using (tenant_id = (select app_current_tenant()) or (select app_rls_bypassed()))
  with check (tenant_id = (select app_current_tenant()) or (select app_rls_bypassed()));
create policy public_entries_readable on knowledge_base for select
  using (is_public);

-- One vote per voter per entry; the entry's counters are updated in the same transaction.
create table knowledge_votes (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  knowledge_id uuid not null references knowledge_base (id) on delete cascade,
  voter_key text not null,
  helpful boolean not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint knowledge_votes_voter_key unique (knowledge_id, voter_key)
);
create index knowledge_votes_tenant_id_idx on knowledge_votes (tenant_id);
select app_track_updated_at('knowledge_votes');
select app_enable_tenant_rls('knowledge_votes');

create table articles (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  slug text not null,
  title text not null,
  excerpt text,
  body text not null default '',
  category text,
  tags text[] not null default '{}',
  status text not null default 'draft',
  author_id uuid references users (id) on delete set null,
  author_name text,
  featured_image_url text,
  published_at timestamptz,
  view_count bigint not null default 0,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  search_vector tsvector generated always as (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(excerpt, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(body, '')), 'C')
  ) stored,
  constraint articles_status_check check (status in ('draft', 'published', 'archived'))
);
create index articles_tenant_id_idx on articles (tenant_id, published_at desc);
create unique index articles_tenant_slug_key on articles (tenant_id, slug);
create index articles_status_idx on articles (status);
create index articles_search_vector_idx on articles using gin (search_vector);
select app_track_updated_at('articles');
select app_enable_tenant_rls('articles');
