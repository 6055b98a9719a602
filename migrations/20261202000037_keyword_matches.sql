-- Keyword search's candidates, found through the full-text GIN indexes.
--
-- Under row-level security Postgres applies a query's own conditions only after the
-- policy's, unless the condition's function is leakproof. `tsvector @@ tsquery` is not,
-- so `search_vector @@ q` never used its GIN index: every keyword search (and every
-- hybrid one, the default) read all of the tenant's entries, 15 ms a query at 10,000
-- entries a tenant in the search benchmark, growing with the tenant.
--
-- These functions find the matches as `fibonacco_search`, a role that cannot log in and
-- bypasses RLS (scripts/stack.sh creates it; a deployment creates it the same way),
-- restricted to the rows the caller's tenant may read: its own, and other tenants'
-- public entries when asked. The search joins their ids back to the tables under the
-- caller's RLS and filters, so a function can narrow an answer, never widen it. Where
-- the role does not exist the functions stay the app role's: still correct (RLS applies
-- inside them), only without the index. Each branch is a plain conjunction, so with the
-- query's words known (the search plans custom) Postgres picks per query: the GIN index
-- for a rare word (0.2 ms against 13 ms at 10,000 entries), the tenant index when a word
-- is in most of the tenant's entries (as before).

create function app_knowledge_matches(q tsquery, with_public boolean)
  returns table (id uuid, score float8)
  language sql stable security definer
  set search_path = public, pg_temp
  as $$
    select kb.id, ts_rank_cd(kb.search_vector, q)::float8
    from knowledge_base kb
    where kb.search_vector @@ q and kb.tenant_id = (select app_current_tenant())
    union all
    select kb.id, ts_rank_cd(kb.search_vector, q)::float8
    from knowledge_base kb
    where with_public and kb.is_public and kb.search_vector @@ q and kb.tenant_id <> (select app_current_tenant())
  $$;

create function app_article_matches(q tsquery)
  returns table (id uuid, score float8)
  language sql stable security definer
  set search_path = public, pg_temp
  as $$
    select a.id, ts_rank_cd(a.search_vector, q)::float8
    from articles a
    where a.search_vector @@ q and a.tenant_id = (select app_current_tenant()) and a.status = 'published'
  $$;

revoke all on function app_knowledge_matches(tsquery, boolean), app_article_matches(tsquery) from public;
grant execute on function app_knowledge_matches(tsquery, boolean), app_article_matches(tsquery) to current_user;

do $$
begin
  if exists (select 1 from pg_roles where rolname = 'fibonacco_search')
     and pg_has_role(current_user, 'fibonacco_search', 'SET') then
    grant select on knowledge_base, articles to fibonacco_search;
    -- A new owner needs CREATE on the schema at the moment it takes a function over,
    -- and nothing after.
    grant create on schema public to fibonacco_search;
    alter function app_knowledge_matches(tsquery, boolean) owner to fibonacco_search;
    alter function app_article_matches(tsquery) owner to fibonacco_search;
    revoke create on schema public from fibonacco_search;
  end if;
end
$$;
