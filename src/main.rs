//! `fibonacco`: one binary, one subcommand per part of the platform.

/// `println!` that returns the write's error instead of panicking: a reader that goes away
/// (`fibonacco openapi | head`) ends the command quietly (see [`quiet_broken_pipe`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// jemalloc instead of glibc's malloc: the pipelines allocate and free gigabytes across
/// DataFusion's, Polars' and tokio's threads, and glibc's per-thread arenas kept the
/// freed memory resident, so each step's peak stacked on the last (docs/benchmarks.md,
/// "Pipelines at 1 M": mimalloc lowered the peak as well but slowed DataFusion's queries
/// by about 70 %).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod ballista;
mod import;
mod ingest;
mod operations;
mod pipelines;
mod seed;

use std::{io::IsTerminal, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use fibonacco_api::{Application, startup::shutdown_signal};
use fibonacco_platform::{
    Config,
    auth::{self, Ability},
    config::redact_url,
    db,
    domain::Slug,
    telemetry, tenancy,
};

#[derive(Parser)]
#[command(name = "fibonacco", version, about = "Fibonacco operations platform: API, workers and pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Serve the HTTP API on APP_HOST:APP_PORT.
    Api,
    /// Everything the platform has, in one process: migrations, the API, a worker on
    /// every queue and the scheduler.
    Run,
    /// Run queued jobs: `--queue emails,sms` (default: all queues).
    Worker(operations::WorkerArgs),
    /// Run the scheduled tasks on their cron schedules.
    Scheduler,
    /// Scheduled tasks: `list`, or `run <task>` once now.
    #[command(subcommand)]
    Schedule(operations::ScheduleCommand),
    /// Queues and failed jobs: `status`, `failed`, `retry <uuid|all>`, `forget <uuid>`, `flush`.
    #[command(subcommand)]
    Queue(operations::QueueCommand),
    /// Outbound sends: `reconcile [--campaign ID]` settles sends whose outcome is unknown;
    /// `suppressions --tenant SLUG` lists what a tenant's sends skip.
    #[command(subcommand)]
    Outbound(operations::OutboundCommand),
    /// Stripe webhook: `conflicts` lists events kept because they disagreed with our orders.
    #[command(subcommand)]
    Stripe(operations::StripeCommand),
    /// Search index: `reindex` re-embeds every knowledge entry from Postgres.
    #[command(subcommand)]
    Search(operations::SearchCommand),
    /// Change data capture into the Parquet lake (`INGEST_LAKE`, default ./lake):
    /// snapshot, then stream; `status`, `compact`, `query "<sql>"`.
    Ingest(ingest::IngestArgs),
    /// Analytics over the lake: engagement, ROI, predictive scores, dashboard read models.
    Pipelines(pipelines::PipelinesArgs),
    /// A Ballista cluster for the pipelines' batch runs
    /// (`PIPELINES_ENGINE=ballista://host:port`): `scheduler`, `executor`.
    Ballista(ballista::BallistaArgs),
    /// Personal access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Load data: `--demo` creates the demo tenant with sample records.
    Seed(SeedArgs),
    /// Import records: `customers FILE --tenant SLUG [--dry-run] [--map HEADER=FIELD]`.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Print the OpenAPI document (JSON) to stdout. Needs no database.
    Openapi,
    /// Benchmarks: print the figure and a baseline from the same run.
    Bench(fibonacco_bench::BenchArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for a tenant; the plain-text token is printed once.
    Create {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Comma-separated abilities (default `*`), e.g. customers:read,customers:write
        #[arg(long, value_delimiter = ',')]
        abilities: Vec<String>,
        /// Lifetime such as 30d, 12h, 45m (default: never expires).
        #[arg(long)]
        expires_in: Option<String>,
        /// A label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        /// Defaults to a slug derived from the name.
        #[arg(long)]
        slug: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Args)]
struct SeedArgs {
    /// Create (once) the `demo` tenant with customers, conversations and knowledge entries,
    /// and print a fresh token for it.
    #[arg(long)]
    demo: bool,
    /// Generate this many synthetic customers with months of activity, campaigns and
    /// orders (bulk COPY through the normal tables, so the capture sees them).
    #[arg(long)]
    customers: Option<u64>,
    /// Spread the customers over this many tenants.
    #[arg(long, default_value_t = 1)]
    tenants: u32,
    /// Length of the generated history in days.
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// RNG seed: the same seed and --end give the same rows.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Last day of the history (YYYY-MM-DD, default today, UTC).
    #[arg(long)]
    end: Option<chrono::NaiveDate>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fibonacco_platform::install_tls_provider();
    // `openapi` must work with no environment at all.
    if let Command::Openapi = cli.command {
        return match print_openapi() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => quiet_broken_pipe(e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => quiet_broken_pipe(e),
    }
}

/// A reader that closed our stdout early is not an error of ours (as with any Unix tool);
/// everything else is printed with its causes.
fn quiet_broken_pipe(e: anyhow::Error) -> ExitCode {
    let broken_pipe = e
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match command {
        Command::Openapi => print_openapi(),
        Command::Migrate => {
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            out!("migrations applied to {}", redact_url(config.database_url.expose()));
            Ok(())
        }
        Command::Api => serve(config).await,
        Command::Run => operations::run_all(config).await,
        Command::Worker(args) => operations::worker(config, args).await,
        Command::Scheduler => operations::scheduler(config).await,
        Command::Schedule(cmd) => operations::schedule(config, cmd).await,
        Command::Queue(cmd) => operations::queue(config, cmd).await,
        Command::Outbound(cmd) => operations::outbound(config, cmd).await,
        Command::Import(cmd) => import::run(config, cmd).await,
        Command::Stripe(cmd) => operations::stripe(config, cmd).await,
        Command::Search(cmd) => operations::search(config, cmd).await,
        Command::Ingest(args) => ingest::run(config, args).await,
        Command::Pipelines(args) => pipelines::run(config, args).await,
        Command::Ballista(args) => ballista::run(config, args).await,
        Command::Token(TokenCommand::Create { tenant, abilities, expires_in, name }) => {
            let pool = db::connect(&config).await?;
            let tenant = tenancy::find_by_slug(&pool, &tenant)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant with slug `{tenant}` (see `fibonacco tenant list`)"))?;
            let abilities = abilities
                .iter()
                .map(|a| Ability::parse(a.trim()).map_err(|e| anyhow::anyhow!("ability `{a}` {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let expires_in = expires_in
                .map(|raw| auth::parse_expires_in(&raw).map_err(|e| anyhow::anyhow!("--expires-in {e}")))
                .transpose()?;
            let token = auth::issue_token(&pool, tenant.id, &name, &abilities, expires_in).await?;
            out!("{}", token.plain_text);
            eprintln!(
                "token {} for tenant `{}` with abilities [{}]{}; store it now, it is not shown again",
                token.id,
                tenant.slug,
                token.abilities.join(", "),
                token.expires_at.map(|t| format!(", expires {t}")).unwrap_or_default()
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { name, slug }) => {
            let pool = db::connect(&config).await?;
            let slug = match slug {
                Some(s) => Slug::parse(&s).map_err(|e| anyhow::anyhow!("--slug {e}"))?,
                None => Slug::from_text(&name)
                    .ok_or_else(|| anyhow::anyhow!("cannot derive a slug from the name; pass --slug"))?,
            };
            let tenant = tenancy::create(&pool, &name, &slug).await?;
            out!("{}\t{}\t{}", tenant.id, tenant.slug, tenant.name);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            let pool = db::connect(&config).await?;
            for t in tenancy::list(&pool).await? {
                out!("{}\t{}\t{}", t.id, t.slug, t.name);
            }
            Ok(())
        }
        Command::Seed(args) => {
            if let Some(customers) = args.customers {
                let plan = fibonacco_bench::synthetic::Plan {
                    customers,
                    tenants: args.tenants,
                    days: args.days,
                    seed: args.seed,
                    end: args.end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
                };
                plan.check()?;
                let pool = db::connect(&config).await?;
                db::migrate(&pool).await?;
                let summary = fibonacco_bench::synthetic::seed(&pool, &plan, std::io::stderr().is_terminal()).await?;
                out!("{}", summary.token);
                eprintln!("{} ({} events)", summary.describe(), summary.events());
                return Ok(());
            }
            if !args.demo {
                anyhow::bail!("nothing to seed: pass --demo or --customers N");
            }
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            let summary = seed::demo(&pool).await?;
            out!("{}", summary.token);
            eprintln!("{}", summary.describe());
            Ok(())
        }
        Command::Bench(args) => fibonacco_bench::run(args).await,
    }
}

fn print_openapi() -> anyhow::Result<()> {
    out!("{}", fibonacco_api::openapi::json());
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config.clone()).await?;
    let addr = app.local_addr();
    eprintln!("fibonacco api on http://{addr} (database {})", redact_url(config.database_url.expose()));
    eprintln!(
        "  OpenAPI: http://{addr}/api/v1/openapi.json   Swagger UI: http://{addr}/docs   health: http://{addr}/health"
    );
    app.run_until(shutdown_signal()).await?;
    Ok(())
}
