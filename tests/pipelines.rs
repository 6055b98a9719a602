//! `fibonacco pipelines` and `fibonacco seed --customers` refuse bad input clearly.

use fibonacco_api::testing::TestApp;

use crate::fibonacco;

#[tokio::test]
async fn command_line_mistakes_get_clear_errors() {
    let app = TestApp::spawn().await;
    let lake = std::env::temp_dir().join(format!("fib-nolake-{}", app.db.name));
    for (args, expected) in [
        (vec!["pipelines", "run", "bogus"], "unknown pipeline"),
        (vec!["pipelines", "run", "--as-of", "yesterday"], "--as-of"),
        (vec!["pipelines", "run", "engagement"], "no lake"),
        (vec!["seed", "--customers", "0"], "--customers"),
        (vec!["seed", "--customers", "10", "--days", "3"], "--days"),
    ] {
        let out = fibonacco(&app.db.url).env("INGEST_LAKE", &lake).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&lake);
}

/// `fibonacco pipelines webhooks` runs the outbox on its own (for a capture in another
/// process) and stops cleanly on Ctrl-C.
#[tokio::test]
async fn the_webhooks_outbox_runs_on_its_own_and_stops_on_ctrl_c() {
    let app = TestApp::spawn().await;
    let lake = std::env::temp_dir().join(format!("fib-nolake-{}", app.db.name));
    let child = fibonacco(&app.db.url)
        .env("INGEST_LAKE", &lake)
        .args(["pipelines", "webhooks"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("webhooks outbox") && !stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&lake);
}
