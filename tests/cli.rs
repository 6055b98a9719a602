//! The administrative commands: tenants, tokens, the demo seed and the OpenAPI document.

use std::process::Command;

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;

use crate::fibonacco as cli;

#[tokio::test]
async fn openapi_subcommand_needs_no_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_fibonacco")).arg("openapi").env_clear().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(spec["paths"]["/api/v1/customers"].is_object());
}

#[tokio::test]
async fn cli_creates_tenants_and_tokens_that_the_api_accepts() {
    let app = TestApp::spawn().await;
    let out = cli(&app.db.url).args(["tenant", "create", "--name", "Cli Shop"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-shop"));

    let dup = cli(&app.db.url).args(["tenant", "create", "--name", "Cli Shop"]).output().unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let out = cli(&app.db.url)
        .args(["token", "create", "--tenant", "cli-shop", "--abilities", "customers:read", "--expires-in", "1h"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (status, _) = app.get("/api/v1/customers", &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send("POST", "/api/v1/customers", Some(&token), Some(serde_json::json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for bad in [
        vec!["token", "create", "--tenant", "nobody"],
        vec!["token", "create", "--tenant", "cli-shop", "--expires-in", "soon"],
        vec!["token", "create", "--tenant", "cli-shop", "--abilities", "Not Valid"],
    ] {
        let out = cli(&app.db.url).args(&bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?} should fail");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"), "{bad:?}: a clear error");
    }
}

#[tokio::test]
async fn seed_demo_is_idempotent_and_its_token_works() {
    let app = TestApp::spawn().await;
    let first = cli(&app.db.url).args(["seed", "--demo"]).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = cli(&app.db.url).args(["seed", "--demo"]).output().unwrap();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already present"));
    let token = String::from_utf8(second.stdout).unwrap().trim().to_owned();
    let (status, list) = app.get("/api/v1/customers?per_page=50", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["meta"]["pagination"]["total"], 12, "seeded once, not twice");
    let id = list["data"][0]["id"].as_str().unwrap();
    let (_, ctx) = app.get(&format!("/api/v1/customers/{id}/ai-context"), &token).await;
    assert_eq!(ctx["data"]["recent_conversations"][0]["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn production_refuses_to_start_without_an_app_key() {
    let app = TestApp::spawn().await;
    for command in [vec!["api"], vec!["worker", "--queue", "emails"], vec!["run"]] {
        let out = cli(&app.db.url).env("APP_ENV", "production").args(&command).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} started without APP_KEY");
        assert!(stderr.contains("APP_KEY") && stderr.contains("openssl rand"), "{command:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn a_reader_that_stops_early_ends_the_command_quietly() {
    // `fibonacco openapi | head`: the document is larger than a pipe's buffer, so the
    // write fails once the reader is gone. That is no error of ours, and never a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fibonacco"))
        .arg("openapi")
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn import_customers_runs_in_the_process_and_a_second_run_creates_nobody() {
    let app = TestApp::spawn().await;
    let slug: String = sqlx::query_scalar("select slug from tenants where id = $1")
        .bind(app.tenant_a)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let file = std::env::temp_dir().join(format!("fib-import-{}.csv", uuid::Uuid::now_v7()));
    // The CLI reads the file as it is: a NUL in a cell is that row's error, not the file's.
    std::fs::write(&file, "Kunde,Mail,Stadt\nAda,ada@example.com,London\nBob,bob@example.com,Ber\0lin\n").unwrap();
    let path = file.to_str().unwrap();
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "customers", path, "--tenant", &slug, "--map", "Kunde=name", "--json"];
        args.extend_from_slice(extra);
        cli(&app.db.url).args(&args).output().unwrap()
    };
    let out = import(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let done: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((done["created_count"].as_i64(), done["error_rows"].as_i64()), (Some(1), Some(1)), "{stdout}");
    assert!(stdout.contains("3,custom.stadt,contains a NUL character"), "the report is printed: {stdout}");
    let again = import(&[]);
    let stdout = String::from_utf8(again.stdout).unwrap();
    let done: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((done["created_count"].as_i64(), done["unchanged_count"].as_i64()), (Some(0), Some(1)), "{stdout}");
    let (_, list) = app.get("/api/v1/customers", &app.token_a).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["metadata"]["stadt"], "London");

    let refused = import(&["--map", "Nope=email"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("mapping.Nope"), "a clear error");
    std::fs::remove_file(&file).unwrap();
}

/// Logs go to standard error, so what a command prints on standard output is only its
/// answer at any log level: `tenant list | …` or `--json | jq` keep working with
/// `RUST_LOG=debug` (which logs every statement). Logs written to a file or a pipe carry
/// no terminal colour codes.
#[tokio::test]
async fn logs_go_to_standard_error_and_leave_the_output_alone() {
    let app = TestApp::spawn().await;
    let out = cli(&app.db.url).env("RUST_LOG", "debug").args(["tenant", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEBUG"), "the statements are logged: {stderr}");
    assert!(!stdout.contains("DEBUG") && !stdout.contains('\u{1b}'), "no log line in the output: {stdout}");
    // Standard error is a pipe here, not a terminal: plain text, no colour codes.
    assert!(!stderr.contains('\u{1b}'), "colour codes in the logs: {stderr}");
    let slugs: Vec<String> = sqlx::query_scalar("select slug from tenants").fetch_all(&app.db.pool).await.unwrap();
    assert!(!slugs.is_empty());
    for slug in &slugs {
        assert!(stdout.contains(slug.as_str()), "{slug} listed: {stdout}");
    }
}
