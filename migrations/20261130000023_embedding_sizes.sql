-- Vectors of any embedding model's size. The columns lose their fixed 384 so another
-- model's vectors can be written; each size in use has its own HNSW index over
-- `embedding::vector(D)` (halfvec past 2,000), partial on vector_dims(embedding) = D,
-- created by the first write of that size (search/src/vectors.rs). 384 is the local
-- MiniLM's size, created here so existing databases keep their index.
drop index knowledge_base_embedding_idx;
drop index knowledge_chunks_embedding_idx;
drop index article_chunks_embedding_idx;
alter table knowledge_base alter column embedding type vector;
alter table knowledge_chunks alter column embedding type vector;
alter table article_chunks alter column embedding type vector;
create index knowledge_base_embedding_384_idx on knowledge_base
  using hnsw ((embedding::vector(384)) vector_cosine_ops) where vector_dims(embedding) = 384;
create index knowledge_chunks_embedding_384_idx on knowledge_chunks
  using hnsw ((embedding::vector(384)) vector_cosine_ops) where vector_dims(embedding) = 384;
create index article_chunks_embedding_384_idx on article_chunks
  using hnsw ((embedding::vector(384)) vector_cosine_ops) where vector_dims(embedding) = 384;

-- Only vectors of the query's size can be compared with it.
create or replace function knowledge_semantic_search(p_tenant uuid, p_query vector, p_limit integer default 10,
                                                     p_include_public boolean default true)
  returns table (id uuid, title text, category text, similarity double precision)
  language sql stable
  as $$
    select kb.id, kb.title, kb.category, 1 - (kb.embedding <=> p_query) as similarity
    from knowledge_base kb
    where kb.embedding is not null
      and vector_dims(kb.embedding) = vector_dims(p_query)
      and (kb.tenant_id = p_tenant or (p_include_public and kb.is_public))
    order by kb.embedding <=> p_query
    limit greatest(1, least(p_limit, 200))
  $$;
