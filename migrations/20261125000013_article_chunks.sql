-- Published articles are searched like knowledge entries: chunk 0 is the article's title,
-- excerpt and opening; chunks 1.. the sections of a long body. `source_md5` is the digest
-- of the text the vectors were made from (md5 of title || excerpt || body), so the
-- embedding sweep can tell current vectors from stale ones without touching `articles`.
create table article_chunks (
  article_id uuid not null references articles (id) on delete cascade,
  chunk_index integer not null,
  tenant_id uuid not null references tenants (id) on delete cascade,
  content text not null,
  embedding vector(384) not null,
  embedding_model text not null,
  source_md5 text not null,
  created_at timestamptz not null default now(),
  primary key (article_id, chunk_index),
  constraint article_chunks_index_check check (chunk_index >= 0)
);
create index article_chunks_tenant_idx on article_chunks (tenant_id);
create index article_chunks_embedding_idx on article_chunks using hnsw (embedding vector_cosine_ops);
select app_enable_tenant_rls('article_chunks');
