-- Customer activity: the events the analytics score. Append-only; the daily cleanup
-- prunes rows older than the retention window.

create table customer_activities (
  id uuid primary key default uuidv7(),
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  activity_type text not null,
  channel text,
  subject_type text,
  subject_id uuid,
  campaign_id uuid references outbound_campaigns (id) on delete set null,
  value_minor bigint,
  currency char(3),
  metadata jsonb not null default '{}',
  occurred_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  constraint customer_activities_type_check check (activity_type in (
    'page_view', 'article_read', 'faq_read', 'knowledge_view', 'presentation_view',
    'survey_response', 'email_open', 'email_click', 'email_reply', 'sms_reply',
    'call_answered', 'unsubscribe', 'chat_message', 'purchase', 'sales_contact')),
  constraint customer_activities_value_currency check (value_minor is null or currency is not null)
);
create index customer_activities_customer_idx on customer_activities (tenant_id, customer_id, occurred_at desc);
create index customer_activities_campaign_id_idx on customer_activities (campaign_id) where campaign_id is not null;
create index customer_activities_occurred_at_idx on customer_activities (occurred_at);
create index customer_activities_type_idx on customer_activities (tenant_id, activity_type, occurred_at);
select app_enable_tenant_rls('customer_activities');

-- The seed's database functions. Both run as the caller (security invoker), so row-level
-- security still applies; the explicit tenant argument is the first line of isolation.

-- Nearest knowledge entries by cosine similarity (1 = same direction).
create function knowledge_semantic_search(p_tenant uuid, p_query vector, p_limit integer default 10,
                                          p_include_public boolean default true)
  returns table (id uuid, title text, category text, similarity double precision)
  language sql stable
  as $$
    select kb.id, kb.title, kb.category, 1 - (kb.embedding <=> p_query) as similarity
    from knowledge_base kb
    where kb.embedding is not null
      and (kb.tenant_id = p_tenant or (p_include_public and kb.is_public))
    order by kb.embedding <=> p_query
    limit greatest(1, least(p_limit, 200))
  $$;

-- Full-text search with web-search syntax ("quoted phrases", -exclusions, or).
create function knowledge_fulltext_search(p_tenant uuid, p_query text, p_limit integer default 10,
                                          p_include_public boolean default true)
  returns table (id uuid, title text, category text, rank real)
  language sql stable
  as $$
    select kb.id, kb.title, kb.category, ts_rank_cd(kb.search_vector, q) as rank
    from knowledge_base kb, websearch_to_tsquery('english', p_query) q
    where kb.search_vector @@ q
      and (kb.tenant_id = p_tenant or (p_include_public and kb.is_public))
    order by rank desc, kb.id
    limit greatest(1, least(p_limit, 200))
  $$;

create function article_fulltext_search(p_tenant uuid, p_query text, p_limit integer default 10)
  returns table (id uuid, title text, slug text, rank real)
  language sql stable
  as $$
    select a.id, a.title, a.slug, ts_rank_cd(a.search_vector, q) as rank
    from articles a, websearch_to_tsquery('english', p_query) q
    where a.search_vector @@ q and a.tenant_id = p_tenant
    order by rank desc, a.id
    limit greatest(1, least(p_limit, 200))
  $$;

-- Helper for the daily cleanup task: deletes activities older than the cut-off in
-- bounded chunks so a large backlog never holds one long lock. Returns rows deleted.
create function prune_customer_activities(p_before timestamptz, p_chunk integer default 10000)
  returns bigint
  language plpgsql
  as $$
declare
  total bigint := 0;
  n bigint;
begin
  loop
    delete from customer_activities
    where id in (select id from customer_activities where occurred_at < p_before limit p_chunk);
    get diagnostics n = row_count;
    total := total + n;
    exit when n < p_chunk;
  end loop;
  return total;
end
$$;
