//! `fibonacco worker` as a process: the job in flight finishes on SIGTERM; `queue
//! failed | retry | forget | flush` manage failed jobs.

use std::time::Duration;

use axum::{Router, extract::Path, http::StatusCode, response::IntoResponse, routing::post};
use fibonacco_api::testing::TestApp;
use fibonacco_platform::{
    queue::{self, failed},
    testing::wait_for,
};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn worker_process_finishes_the_job_in_flight_on_sigterm_and_the_cli_manages_failed_jobs() {
    let app = TestApp::spawn().await;
    // ElevenLabs that takes a while, so SIGTERM arrives mid-job.
    async fn slow(Path(_voice): Path<String>) -> impl IntoResponse {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (StatusCode::OK, b"ID3-slow".to_vec())
    }
    let stub = Router::new().route("/v1/text-to-speech/{voice}", post(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await.unwrap() });
    let (s, r) =
        app.send("POST", "/api/v1/tts", Some(&app.token_a), Some(json!({"text": "Hold on", "voice_id": "v1"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["data"]["id"].as_str().unwrap().to_owned();
    let storage = std::env::temp_dir().join(format!("fib-audio-{}", Uuid::now_v7()));
    let cli = || {
        let mut cmd = crate::fibonacco(&app.db.url);
        cmd.env("QUEUE_PREFIX", app.state.queue.prefix())
            .env("ELEVENLABS_API_KEY", "k")
            .env("ELEVENLABS_BASE_URL", format!("http://{addr}"))
            .env("STORAGE_URL", &storage);
        cmd
    };
    let mut worker = cli().args(["worker", "--queue", "tts"]).spawn().unwrap();
    wait_for("the job to be in flight", Duration::from_secs(30), || async {
        app.state.queue.sizes("tts").await.unwrap().reserved == 1
    })
    .await;
    let killed = std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "worker exited with {status}");
    let (_, r) = app.get(&format!("/api/v1/tts/{id}"), &app.token_a).await;
    assert_eq!(r["data"]["status"], "completed", "the job in flight finished before exit: {r}");
    assert_eq!(app.state.queue.sizes("tts").await.unwrap(), Default::default());

    // `queue failed / retry / forget / flush` from the command line.
    let payload =
        queue::JobPayload::new(queue::GENERATE_TTS, json!({"tenant_id": app.tenant_a, "tts_request_id": Uuid::nil()}));
    failed::record(&app.db.pool, payload.uuid, "tts", serde_json::to_value(&payload).unwrap(), "boom").await.unwrap();
    let out = cli().args(["queue", "failed"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&payload.uuid.to_string()) && listed.contains("GenerateTTS") && listed.contains("boom"),
        "{listed}"
    );
    let out = cli().args(["queue", "retry", &payload.uuid.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(app.state.queue.ready_payloads("tts").await.unwrap().iter().any(|p| p.uuid == payload.uuid));
    assert!(failed::list(&app.db.pool).await.unwrap().is_empty());
    let out = cli().args(["queue", "forget", &Uuid::now_v7().to_string()]).output().unwrap();
    assert!(!out.status.success(), "forgetting an unknown job is an error");
    failed::record(&app.db.pool, Uuid::now_v7(), "tts", json!({}), "x").await.unwrap();
    let out = cli().args(["queue", "flush"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 failed jobs deleted");
    let out = cli().args(["queue", "retry", "not-a-uuid"]).output().unwrap();
    assert!(!out.status.success());
}
