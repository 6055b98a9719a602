-- Long knowledge entries are searched by section: chunk 0 is the entry's own vector
-- (knowledge_base.embedding, title and the start of the content); chunks 1.. are the
-- sections of content too long for one vector, each embedded with the entry's title.
-- Rewritten whole whenever the entry is re-embedded.
create table knowledge_chunks (
  knowledge_id uuid not null references knowledge_base (id) on delete cascade,
  chunk_index integer not null,
  tenant_id uuid not null references tenants (id) on delete cascade,
  content text not null,
  embedding vector(384) not null,
  embedding_model text not null,
  created_at timestamptz not null default now(),
  primary key (knowledge_id, chunk_index),
  constraint knowledge_chunks_index_check check (chunk_index >= 1)
);
create index knowledge_chunks_tenant_idx on knowledge_chunks (tenant_id);
create index knowledge_chunks_embedding_idx on knowledge_chunks using hnsw (embedding vector_cosine_ops);

-- Same visibility as the entries: own chunks, and the chunks of public entries.
alter table knowledge_chunks enable row level security;
alter table knowledge_chunks force row level security;
create policy tenant_isolation on knowledge_chunks
  using (tenant_id = (select app_current_tenant()) or (select app_rls_bypassed()))
  with check (tenant_id = (select app_current_tenant()) or (select app_rls_bypassed()));
create policy public_entries_readable on knowledge_chunks for select
  using (exists (select 1 from knowledge_base kb where kb.id = knowledge_id and kb.is_public));
