//! The crate's invariants as ARCHITECTURE.md states them, checked on the sources:
//! `delivery` never imports a web framework or the API crate, and only
//! `delivery::campaigns::store` writes a campaign's or a recipient's status.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every production source file of the workspace (`src/` of each crate and of the binary).
fn production_sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let src = entry.path().join("src");
        if entry.path().join("Cargo.toml").exists() && src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    rust_files(&root.join("src"), &mut files);
    files
}

#[test]
fn delivery_never_imports_a_web_framework_or_the_api() {
    let manifest = std::fs::read_to_string(workspace().join("delivery/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dev-dependencies]").next().unwrap();
    for forbidden in ["axum", "utoipa", "tower", "fibonacco-api"] {
        assert!(
            !dependencies.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "delivery depends on {forbidden}"
        );
    }
    let mut files = Vec::new();
    rust_files(&workspace().join("delivery/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in ["axum::", "utoipa::", "fibonacco_api::"] {
            assert!(!text.contains(forbidden), "{} uses {forbidden}", file.display());
        }
    }
}

#[test]
fn only_the_campaigns_store_writes_campaign_or_recipient_status() {
    let store = workspace().join("delivery/src/campaigns/store.rs");
    let mut writers = Vec::new();
    for file in production_sources() {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        // Each `update …` statement up to the end of its string literal.
        for (at, _) in text.match_indices("update outbound_campaign") {
            let statement = &text[at..];
            let statement = &statement[..statement.find('"').unwrap_or(statement.len())];
            let sets_status = statement.contains("set status") || statement.contains(" status =");
            let recipients = statement.starts_with("update outbound_campaign_recipients");
            if (sets_status || recipients) && file.canonicalize().unwrap() != store.canonicalize().unwrap() {
                writers.push(format!("{}: {}", file.display(), statement.lines().next().unwrap_or_default()));
            }
        }
    }
    assert!(writers.is_empty(), "status written outside delivery::campaigns::store:\n{}", writers.join("\n"));
}
