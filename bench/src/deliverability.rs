//! `fibonacco bench deliverability`: SES events per second through `POST /api/ses/events`
//! (SNS signature check with the certificate cached, replay record, recipient move,
//! activity) over loopback, against the same events applied straight through
//! the same batched writer (`ses_sink`) without HTTP or signatures, in the same run.
//!
//! Every event is a distinct SNS message for a distinct recipient, so none is a replay;
//! the mix is in [`event`]. Client and server share this machine's cores.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use chrono::{SecondsFormat, Utc};
use clap::Args;
use fibonacco_api::Application;
use fibonacco_delivery::{
    ses_events::{self, Incoming, Policy, SesEvent},
    sns::test_signer,
};
use fibonacco_platform::{Config, cache, db, domain::Slug, tenancy};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Args)]
pub struct DeliverabilityBench {
    /// SES events in each scenario (each for its own recipient).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent client connections (and, for the baseline, concurrent transactions).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Writers of the batched event sink in the baseline (the API uses `ses_sink::WRITERS`).
    #[arg(long, default_value_t = fibonacco_delivery::ses_sink::WRITERS)]
    writers: usize,
    /// Events per batch in the baseline (the API uses `ses_sink::BATCH`).
    #[arg(long, default_value_t = fibonacco_delivery::ses_sink::BATCH)]
    batch: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Scenario {
    name: &'static str,
    events: usize,
    errors: usize,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:bench-ses-events";

/// The SES event of the `i`-th message, in the mix SES publishes for this platform's
/// campaigns: a Send and then a Delivery for almost every message, a few bounces, a
/// complaint, a delay; opens and clicks only where a configuration set has SES tracking
/// on (the platform's own links record them otherwise). Per 100 events: 47 Send, 45
/// Delivery, 3 permanent and 1 transient bounce, 1 complaint, 1 delay, 1 open, 1 click.
fn event(i: usize, message_id: &str, at: &str) -> Value {
    let mail = json!({"messageId": message_id, "timestamp": at});
    let address = format!("{message_id}@bench.example");
    match i % 100 {
        0..=46 => json!({"eventType": "Send", "mail": mail, "send": {}}),
        47..=91 => json!({"eventType": "Delivery", "mail": mail, "delivery": {"timestamp": at}}),
        92..=94 => {
            json!({"eventType": "Bounce", "mail": mail, "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
            "bouncedRecipients": [{"emailAddress": address}], "timestamp": at}})
        }
        95 => {
            json!({"eventType": "Bounce", "mail": mail, "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": address}], "timestamp": at}})
        }
        96 => {
            json!({"eventType": "Complaint", "mail": mail, "complaint": {"complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse", "timestamp": at}})
        }
        97 => {
            json!({"eventType": "DeliveryDelay", "mail": mail, "deliveryDelay": {"delayType": "MailboxFull", "timestamp": at}})
        }
        98 => {
            json!({"eventType": "Open", "mail": mail, "open": {"timestamp": at, "userAgent": "Mozilla/5.0 (iPhone)"}})
        }
        _ => json!({"eventType": "Click", "mail": mail, "click": {"timestamp": at, "link": "https://shop.example/",
            "userAgent": "Mozilla/5.0 (iPhone)"}}),
    }
}

pub async fn run(args: DeliverabilityBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0 && args.concurrency > 0, "--events and --concurrency must be positive");
    let config = Config::from_env()?;
    let pool_size = u32::try_from(args.concurrency.min(64)).unwrap_or(64);
    let db = crate::scratch(pool_size + 4).await?;
    let tenant = tenancy::create(&db.pool, "Bench", &Slug::parse("bench").expect("static")).await?;
    let n = args.events;
    eprintln!("seeding {} customers and sent recipients…", 2 * n);
    {
        let mut tx = db::begin_tenant(&db.pool, tenant.id).await?;
        sqlx::query(
            "with c as (
               insert into crm_customers (tenant_id, name, slug, email)
               select $1, 'Customer ' || g, 'customer-' || g, 'm' || g || '@bench.example' from generate_series(1, $2) g
               returning id, email),
             tpl as (insert into email_templates (tenant_id, name, subject, html_body)
                     values ($1, 'Bench', 'Hello', '<p>Hi</p>') returning id),
             camp as (insert into outbound_campaigns (tenant_id, name, type, status, email_template_id)
                      select $1, 'Bench', 'email', 'running', id from tpl returning id)
             insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id, status, sent_at, provider_message_id)
             select $1, camp.id, c.id, 'sent', now() - interval '1 hour', split_part(c.email, '@', 1) from c, camp",
        )
        .bind(tenant.id)
        .bind(i64::try_from(2 * n)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }

    // The SNS side: a host serving the signing certificate, and the app allowing it.
    let cert_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cert_host = format!("http://{}", cert_listener.local_addr()?);
    tokio::spawn(async move {
        let app = Router::new().route("/cert.pem", get(|| async { test_signer::CERT_PEM }));
        let _ = axum::serve(cert_listener, app).await;
    });
    let mut app_config = config.clone();
    app_config.app_port = 0;
    app_config.ses_events.topic_arns = vec![TOPIC.to_owned()];
    app_config.ses_events.cert_hosts = vec![cert_host.clone()];
    let redis = cache::connect(config.redis_url.expose()).await?;
    let app = Application::with_parts(app_config, db.pool.clone(), redis).await?;
    let url = format!("http://{}/api/ses/events", app.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    // Messages m1..mN go through HTTP; m(N+1)..m(2N) are the baseline's.
    eprintln!("signing {n} SNS messages…");
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let cert_url = format!("{cert_host}/cert.pem");
    let signing_started = Instant::now();
    let bodies: Vec<String> = {
        let workers = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(2);
        let chunk = n.div_ceil(workers);
        let mut handles = Vec::new();
        for w in 0..workers {
            let (at, cert_url) = (at.clone(), cert_url.clone());
            handles.push(tokio::task::spawn_blocking(move || {
                (w * chunk..((w + 1) * chunk).min(n))
                    .map(|i| {
                        let message = event(i, &format!("m{}", i + 1), &at).to_string();
                        test_signer::message("Notification", &format!("sns-{i}"), TOPIC, &message, &at, &cert_url)
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(h.await?);
        }
        all
    };
    let signing = signing_started.elapsed();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    // One request first, so the certificate is fetched and cached before the clock starts.
    let warm = test_signer::message(
        "Notification",
        "sns-warm",
        TOPIC,
        &event(0, "warm-up-not-a-message", &at).to_string(),
        &at,
        &cert_url,
    );
    client.post(&url).body(warm.to_string()).send().await?.error_for_status()?;

    let bodies = Arc::new(bodies);
    let http = {
        let (client, url) = (client.clone(), url.clone());
        drive("POST /api/ses/events (signed SNS, cert cached)", n, args.concurrency, move |i| {
            let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
            async move {
                match client.post(&url).header("content-type", "text/plain").body(bodies[i].clone()).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.json::<Value>().await.map(|b| b["data"] == "applied").unwrap_or(false)
                    }
                    _ => false,
                }
            }
        })
        .await
    };

    let events: Arc<Vec<SesEvent>> = Arc::new(
        (0..n)
            .map(|i| SesEvent::parse(&event(i, &format!("m{}", n + i + 1), &at).to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let baseline = {
        let sink = fibonacco_delivery::ses_sink::Sink::with(db.pool.clone(), args.writers, args.batch);
        drive("baseline: the batched writer, no HTTP, no signature", n, args.concurrency, move |i| {
            let (sink, events) = (sink.clone(), events.clone());
            async move {
                let item = Incoming { sns_id: format!("base-{i}"), topic_arn: TOPIC.into(), event: events[i].clone() };
                matches!(sink.submit(item, Policy::default()).await, Ok(ses_events::Outcome::Applied(_)))
            }
        })
        .await
    };

    // Signature checks alone, on one core: what the endpoint spends on cryptography.
    let sample: Vec<fibonacco_delivery::sns::Message> = (0..n.min(2000))
        .map(|i| {
            let body = test_signer::message("Notification", &format!("v-{i}"), TOPIC, "{}", &at, &cert_url);
            fibonacco_delivery::sns::Message::parse(body.to_string().as_bytes())
        })
        .collect::<Result<_, _>>()?;
    let cert = fibonacco_delivery::sns::certificate_der(test_signer::CERT_PEM)?;
    let verify_started = Instant::now();
    for m in &sample {
        fibonacco_delivery::sns::verify(m, &cert)?;
    }
    let verify_us = verify_started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;

    let _ = stop_tx.send(());
    let _ = server.await;

    let results = [http, baseline];
    println!(
        "events: {n}  concurrency: {}  (signing the messages took {:.1}s)",
        args.concurrency,
        signing.as_secs_f64()
    );
    println!("{:<52} {:>10} {:>8} {:>9} {:>9}", "scenario", "events/s", "errors", "p50 ms", "p99 ms");
    for r in &results {
        println!("{:<52} {:>10.0} {:>8} {:>9.2} {:>9.2}", r.name, r.events_per_sec, r.errors, r.p50_ms, r.p99_ms);
    }
    println!("signature check alone: {verify_us:.1} µs per message on one core");
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "deliverability",
                "events": n,
                "concurrency": args.concurrency,
                "baseline_writers": args.writers,
                "baseline_batch": args.batch,
                "scenarios": results,
                "verify_us_per_message": verify_us,
            })
        );
    }
    Ok(())
}

/// Runs `call(0..n)` from `concurrency` tasks, each index once; events/s over the wall time.
async fn drive<F, Fut>(name: &'static str, n: usize, concurrency: usize, call: F) -> Scenario
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    eprintln!("running {name}…");
    let next = Arc::new(AtomicUsize::new(0));
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, call) = (next.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let start = Instant::now();
                if !call(i).await {
                    errors += 1;
                }
                latencies.push(start.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, err)) = t.await {
            all.extend(lat);
            errors += err;
        }
    }
    let wall = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).saturating_sub(1).min(all.len() - 1);
        all[idx].as_secs_f64() * 1000.0
    };
    Scenario {
        name,
        events: all.len(),
        errors,
        events_per_sec: all.len() as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}
