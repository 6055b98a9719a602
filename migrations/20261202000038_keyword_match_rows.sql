-- Tell the planner that keyword matches are few, so that a search joins them back to
-- their rows one by one through the primary key.
--
-- Without a `rows` estimate a set-returning function is assumed to return 1,000 rows,
-- and for that many Postgres joined migration 37's matches back with a hash over every
-- row the tenant may read: a search for a word in one entry of 30,000 read all 30,000
-- (18 ms), when the function had found it in 1.5 ms. Joined back one by one, a search
-- costs what its matches cost. A word in most of a tenant's entries now costs more than
-- before (89-115 against 68-82 ms at 30,000 matches, measured by hand; docs/benchmarks.md),
-- where every match is read either way.

alter function app_knowledge_matches(tsquery, boolean) rows 10;
alter function app_article_matches(tsquery) rows 10;
