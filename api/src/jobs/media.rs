//! `GenerateTTS` (ElevenLabs → object store → the request row) and `GenerateEmbedding`.

use fibonacco_platform::{TenantId, db, queue::Reserved};
use serde::Deserialize;
use uuid::Uuid;

use super::{JobContext, JobError, data};
use crate::providers::ProviderError;

#[derive(Debug, Deserialize)]
struct TtsJob {
    tenant_id: Uuid,
    tts_request_id: Uuid,
}

/// Speaks a TTS request's text and records where the audio is. Safe to re-run: a
/// completed request is left alone; a rerun after a crash overwrites the same object.
#[tracing::instrument(name = "job.generate_tts", skip_all)]
pub async fn generate_tts(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let j: TtsJob = data(job)?;
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
            let retry = matches!(e, ProviderError::Retryable { .. });
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

/// The embedder belongs to the search service, which this build does not have yet. The
/// job therefore fails in a way that says so and is retried later; it never marks an
/// entry done, so the entries stay `pending` and are embedded once the service exists.
#[tracing::instrument(name = "job.generate_embedding", skip_all)]
pub async fn generate_embedding(_ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    #[derive(Deserialize)]
    struct EmbeddingJob {
        #[allow(dead_code)]
        knowledge_id: Uuid,
    }
    let _: EmbeddingJob = data(job)?;
    Err(JobError::retry("no embedder is available yet: embeddings come with the search service"))
}
