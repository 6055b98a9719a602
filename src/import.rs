//! `fibonacco import customers FILE --tenant SLUG`: the API's import run in this process
//! with a progress bar, for operators: the same limits, checks, matching and report as
//! `POST /api/v1/customers/import`, without a worker.

use std::{collections::BTreeMap, io::IsTerminal, path::PathBuf};

use clap::{Args, Subcommand};
use fibonacco_api::{
    ApiError,
    customers::import::{self, ImportRequest, run::Counts},
};
use fibonacco_platform::{Config, db, tenancy};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Customers from a CSV file, matched by e-mail, else phone: importing a file again
    /// creates nobody twice.
    Customers(CustomersImport),
}

#[derive(Args)]
pub struct CustomersImport {
    /// The CSV file (UTF-8, comma- or semicolon-separated), header row first.
    file: PathBuf,
    /// Tenant slug.
    #[arg(long)]
    tenant: String,
    /// Check and count without writing a customer.
    #[arg(long)]
    dry_run: bool,
    /// `HEADER=FIELD` (repeatable): name, first_name, last_name, email, phone, tags,
    /// ignore, custom.<key> or context.<key>.
    #[arg(long = "map", value_name = "HEADER=FIELD")]
    map: Vec<String>,
    /// Print one JSON object (the import) as the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Config, cmd: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Customers(args) = cmd;
    let pool = db::connect(&config).await?;
    let tenant = tenancy::find_by_slug(&pool, &args.tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant with the slug `{}`", args.tenant))?;
    // Refused before it is read: the same limit as the API's upload.
    let size =
        std::fs::metadata(&args.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?.len();
    anyhow::ensure!(
        size <= import::MAX_FILE_BYTES as u64,
        "{} is {} MiB; a file may hold at most {} MiB (split it)",
        args.file.display(),
        size / (1024 * 1024),
        import::MAX_FILE_BYTES / (1024 * 1024)
    );
    let bytes = std::fs::read(&args.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let csv = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", args.file.display()))?;
    let mut mapping = BTreeMap::new();
    for pair in &args.map {
        let (header, field) =
            pair.split_once('=').ok_or_else(|| anyhow::anyhow!("--map `{pair}`: expected HEADER=FIELD"))?;
        mapping.insert(header.to_owned(), field.to_owned());
    }
    let request = ImportRequest {
        csv: Some(csv),
        file_name: args.file.file_name().map(|n| n.to_string_lossy().into_owned()),
        mapping: (!mapping.is_empty()).then_some(mapping),
        dry_run: Some(args.dry_run),
    };
    let accepted = match import::accept(&pool, tenant.id, None, request).await {
        Ok(i) => i,
        Err(ApiError::Validation(errors)) => anyhow::bail!("the file was refused: {}", serde_json::to_string(&errors)?),
        Err(e) => return Err(e.into()),
    };
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(accepted.counts.total_rows.max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {msg}").expect("a static template"),
    );
    let show = |c: &Counts| {
        bar.set_position(c.processed_rows.max(0) as u64);
        bar.set_message(format!("{} new, {} updated, {} with errors", c.created_count, c.updated_count, c.error_rows));
    };
    let outcome = import::run::run(&pool, tenant.id, accepted.id, &show).await;
    bar.finish_and_clear();
    if let Err(e) = outcome {
        import::run::fail(&pool, tenant.id, accepted.id, &e.to_string()).await?;
        anyhow::bail!("import {} failed: {e}", accepted.id);
    }
    let done = import::find(&pool, tenant.id, accepted.id).await?.ok_or_else(|| anyhow::anyhow!("import gone"))?;
    out!(
        "import {} {}: {} rows, {} created, {} updated, {} unchanged, {} duplicate rows merged, {} rows with errors{}",
        done.id,
        if done.dry_run { "(dry run, nothing written)" } else { "completed" },
        done.counts.total_rows,
        done.counts.created_count,
        done.counts.updated_count,
        done.counts.unchanged_count,
        done.counts.duplicate_rows,
        done.counts.error_rows,
        if done.counts.error_rows > 0 { " (`GET /api/v1/imports/{id}/errors` has the report)" } else { "" }
    );
    if done.counts.error_rows > 0 {
        let report = import::error_report(&pool, tenant.id, done.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        for line in report.unwrap_or_default().lines().skip(1).take(20) {
            out!("  {line}");
        }
    }
    if args.json {
        out!("{}", serde_json::to_string(&done)?);
    }
    Ok(())
}
