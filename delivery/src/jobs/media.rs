//! `GenerateTTS` (ElevenLabs → object store → the request row) and `GenerateEmbedding`.

use fibonacco_platform::{
    TenantId, db,
    queue::{
        JobError, Reserved,
        jobs::{GenerateEmbedding, GenerateTts},
        worker::data,
    },
};
use uuid::Uuid;

use super::JobContext;
use crate::providers::ProviderError;

/// Speaks a TTS request's text and records where the audio is. Safe to re-run: a
/// completed request is left alone; a rerun after a crash overwrites the same object.
#[tracing::instrument(name = "job.generate_tts", skip_all)]
pub async fn generate_tts(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let j: GenerateTts = data(job)?;
    let tenant = TenantId::from_uuid(j.tenant_id);
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let row: Option<(String, String, Option<String>, String)> =
        sqlx::query_as("select text, voice_id, model, status from tts_requests where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(j.tts_request_id)
            .fetch_optional(&mut *tx)
            .await?;
    // The API queues before it commits; a job that arrives first finds no row yet.
    let Some((text, voice, model, status)) = row else {
        return Err(JobError::retry("TTS request not visible yet (or its request was rolled back)"));
    };
    if status == "completed" {
        return Ok(());
    }
    sqlx::query("update tts_requests set status = 'processing', error = null where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(j.tts_request_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let result = async {
        let client =
            ctx.providers.elevenlabs.as_ref().ok_or(ProviderError::NotConfigured("ElevenLabs (ELEVENLABS_API_KEY)"))?;
        let audio = client.synthesize(&voice, model.as_deref(), &text).await?;
        let bytes = audio.len() as i64;
        let location = ctx.providers.storage.put(&format!("tts/{tenant}/{}.mp3", j.tts_request_id), audio).await?;
        Ok::<_, ProviderError>((location, bytes))
    }
    .await;

    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let outcome = match result {
        Ok((location, bytes)) => {
            sqlx::query(
                "update tts_requests set status = 'completed', audio_url = $3, audio_bytes = $4, error = null,
                    completed_at = now() where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(j.tts_request_id)
            .bind(location)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        Err(e) => {
            let retry = matches!(e, ProviderError::Retryable { .. } | ProviderError::Ambiguous { .. });
            sqlx::query(
                "update tts_requests set status = case when $4 then 'pending' else 'failed' end, error = $3
                 where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(j.tts_request_id)
            .bind(e.to_string())
            .bind(retry)
            .execute(&mut *tx)
            .await?;
            Err(JobError::from(e))
        }
    };
    tx.commit().await?;
    outcome
}

/// Embeds a knowledge entry (title and content) and stores the vector with its model:
/// pending → processing → completed. Re-running is harmless (the same text gives the same
/// vector). Without an embedder (model files missing) the job is retried later and the
/// entry stays pending; an entry whose dimensions do not fit the index fails for good.
#[tracing::instrument(name = "job.generate_embedding", skip_all)]
pub async fn generate_embedding(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let j: GenerateEmbedding = data(job)?;
    let embedder = match &ctx.embedder {
        Some(Ok(e)) => e.clone(),
        Some(Err(reason)) => return Err(JobError::retry(format!("no embedder: {reason}"))),
        None => return Err(JobError::retry("no embedder is configured on this worker")),
    };
    let tenant = TenantId::from_uuid(j.tenant_id);
    let knowledge_id = match (j.knowledge_id, j.article_id) {
        (Some(id), None) => id,
        (None, Some(article)) => return embed_article(ctx, embedder.as_ref(), tenant, article).await,
        _ => return Err(JobError::fail("the job names neither one knowledge entry nor one article")),
    };
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "update knowledge_base set embedding_status = 'processing' where tenant_id = $1 and id = $2
         returning title, content",
    )
    .bind(tenant)
    .bind(knowledge_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    // Deleted since it was queued: nothing to do.
    let Some((title, content)) = row else { return Ok(()) };
    use fibonacco_search::index::IndexError;
    let entries = [(title, content)];
    let result = fibonacco_search::index::embed_entries(embedder.as_ref(), &entries).await;
    let [(title, content)] = entries;
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let outcome = match result {
        Ok(mut vectors) => {
            // Only if the text is still the one embedded: an edit meanwhile re-queued it.
            let points = fibonacco_search::index::store_entry(
                &mut tx,
                tenant,
                knowledge_id,
                &title,
                &content,
                &vectors.remove(0),
                embedder.model(),
            )
            .await?;
            tx.commit().await?;
            // Postgres first (the source of truth), then an external store's copy; if that
            // fails the job retries and rewrites both, which is harmless.
            if let Some(points) = points {
                ctx.store.replace(knowledge_id, &points).await.map_err(store_error)?;
            }
            return Ok(());
        }
        Err(IndexError::Database(e)) => Err(e.into()),
        // Retryable (model or store unavailable): pending for the next try; anything else
        // (dimensions that do not fit the index, input the model refuses): failed.
        Err(e) => {
            let err = index_error(e);
            let status = if matches!(err, JobError::Fail(_)) { "failed" } else { "pending" };
            set_embedding_status(&mut tx, tenant, knowledge_id, status).await?;
            Err(err)
        }
    };
    tx.commit().await?;
    outcome
}

/// Embeds a published article (title, excerpt, body; long bodies by section), or removes
/// the vectors of one that is no longer published. Re-running is harmless.
#[tracing::instrument(name = "job.generate_article_embedding", skip_all)]
async fn embed_article(
    ctx: &JobContext,
    embedder: &dyn fibonacco_search::Embedder,
    tenant: TenantId,
    id: Uuid,
) -> Result<(), JobError> {
    use fibonacco_search::index;
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let row: Option<(String, Option<String>, String, String)> =
        sqlx::query_as("select title, excerpt, body, status from articles where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((title, excerpt, body, status)) = row else {
        // Deleted: its vectors went with it (and the API removed any external copy).
        return Ok(());
    };
    if status != "published" {
        index::remove_article(&mut tx, tenant, id).await?;
        tx.commit().await?;
        return ctx.store.remove(&[id]).await.map_err(store_error);
    }
    tx.commit().await?;
    let texts = [(title.clone(), index::article_content(excerpt.as_deref(), &body))];
    let mut vectors = index::embed_entries(embedder, &texts).await.map_err(index_error)?;
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let points = index::store_article(
        &mut tx,
        tenant,
        id,
        &title,
        excerpt.as_deref(),
        &body,
        &vectors.remove(0),
        embedder.model(),
    )
    .await?;
    tx.commit().await?;
    // Changed or unpublished meanwhile: the edit queued its own job.
    if let Some(points) = points {
        ctx.store.replace(id, &points).await.map_err(store_error)?;
    }
    Ok(())
}

/// Whether an indexing failure may heal by waiting (model or store unavailable, database)
/// or not (dimensions that do not fit the index, input the model refuses).
fn index_error(e: fibonacco_search::index::IndexError) -> JobError {
    use fibonacco_search::{EmbedError, index::IndexError};
    match e {
        IndexError::Embed(e @ (EmbedError::Unavailable(_) | EmbedError::ModelUnavailable(_))) => {
            JobError::retry_because(e)
        }
        IndexError::Database(e) => e.into(),
        IndexError::Store(e) => store_error(e),
        e @ (IndexError::Dimensions { .. } | IndexError::Unindexable { .. } | IndexError::Embed(_)) => {
            JobError::fail_because(e)
        }
    }
}

/// A vector store's copy could not be written: Postgres already has the vectors, and a
/// retry rewrites both, harmlessly.
fn store_error(e: fibonacco_search::store::StoreError) -> JobError {
    JobError::retry_because(anyhow::Error::new(e).context("vector store"))
}

async fn set_embedding_status(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: Uuid,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update knowledge_base set embedding_status = $3 where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}
