//! Building the router and serving it.

use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    time::Duration,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use fibonacco_platform::{Config, cache, db};
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    ApiError, ads, ai, analytics, articles, commerce, content, conversations, customers, faq_categories, health,
    knowledge, learning, limits, observability, openapi, outbound, personalities, presentations, search, segments,
    state::AppState, stripe, surveys, tracking, training, tts, webhooks,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// JSON bodies larger than this are refused with 413 before parsing.
const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// The whole HTTP surface, ready to serve or to drive with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(customers::routes())
        .merge(analytics::routes())
        .merge(conversations::routes())
        .merge(knowledge::routes())
        .merge(faq_categories::routes())
        .merge(outbound::routes())
        .merge(personalities::routes())
        .merge(commerce::routes())
        .merge(content::routes())
        .merge(ads::routes())
        .merge(learning::routes())
        .merge(articles::routes())
        .merge(tts::routes())
        .merge(surveys::routes())
        .merge(presentations::routes())
        .merge(training::routes())
        .merge(search::routes())
        .merge(ai::routes())
        .merge(webhooks::routes())
        .merge(segments::routes())
        .layer(middleware::from_fn_with_state(state.clone(), limits::enforce));
    let timeout = state.config.request_timeout;
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/stripe/webhook", axum::routing::post(stripe::webhook))
        .route("/api/twilio/sms/inbound", axum::routing::post(outbound::inbound::sms_inbound))
        .route("/api/ses/events", axum::routing::post(outbound::ses::ses_events))
        .merge(tracking::routes())
        .route("/health", get(health::health))
        .route("/metrics", get(observability::render))
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/api/v1/openapi.json", openapi::document(&state.config.rate_limits, &state.config.ai)))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(observability::track))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| -> Response {
            tracing::error!("handler panicked");
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: query strings may carry search terms or e-mail addresses.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id, tenant_id = tracing::field::Empty)
        })
        // One line per request at info: status and latency, inside the span above.
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A bound, ready-to-serve API: `build` connects and binds; `run_until` serves.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    #[tracing::instrument(name = "api.build", skip_all)]
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::connect(&config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Postgres (DATABASE_URL): {e}"))?;
        let redis = cache::connect(config.redis_url.expose())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis (REDIS_URL): {e}"))?;
        Self::with_parts(config, pool, redis).await
    }

    /// Binds `APP_HOST:APP_PORT` (port 0 picks a free one, as tests do).
    pub async fn with_parts(
        config: Config,
        pool: sqlx::PgPool,
        redis: redis::aio::ConnectionManager,
    ) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(config.app_host, config.app_port);
        let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let dims = fibonacco_search::embed::configured_dimensions(fibonacco_platform::config::env_lookup())?;
        let store = fibonacco_search::store::from_lookup(pool.clone(), fibonacco_platform::config::env_lookup(), dims)?;
        let state = AppState::with_store(pool, redis, config, store);
        if matches!(*state.llm, fibonacco_platform::llm::LlmProvider::Local) {
            tracing::warn!(
                "neither OPENAI_API_KEY nor OPENROUTER_API_KEY is set: AI chat and generation answer from local templates, not a language model"
            );
        }
        if state.config.ses_events.topic_arns.is_empty() {
            tracing::warn!(
                "SNS_TOPIC_ARNS is not set: POST /api/ses/events refuses every SES event (no delivery, bounce or complaint is recorded)"
            );
        }
        Ok(Self { listener, router: router(state.clone()), state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
    /// `SHUTDOWN_GRACE_SECS` (an open event stream or a stalled upload would otherwise
    /// keep the process alive forever), and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr(), "api listening");
        let grace = self.state.config.shutdown_grace;
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled.send(());
        });
        let deadline = async move {
            // A server that ends on its own drops the sender: wait forever then.
            if on_signal.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = serve.into_future() => served?,
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after SHUTDOWN_GRACE_SECS; stopping anyway");
            }
        }
        // Connections a handler still holds are not waited for past a few seconds.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.state.pool.close()).await;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a worker reserves its first job before it polls its
/// shutdown future, and a SIGTERM in between took the default action and killed the
/// process with the job in flight.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            // A handler that could not be installed is never waited for, as before, but said.
            let wait = |name: &'static str, listener: std::io::Result<tokio::signal::unix::Signal>| async move {
                match listener {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, signal = name, "cannot listen for the signal; it will not stop the process");
                        std::future::pending::<()>().await
                    }
                }
            };
            tokio::select! {
                _ = wait("SIGINT", interrupt) => {},
                _ = wait("SIGTERM", terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

#[cfg(all(test, unix))]
mod tests {
    /// A SIGTERM that arrives after `shutdown_signal()` is called but before its future is
    /// polled ends the future, not the process (nextest runs each test in a process of
    /// its own, so a failure here is this test's process killed by the signal).
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_is_seen_not_fatal() {
        let stop = super::shutdown_signal();
        let sent =
            std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status().unwrap();
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), stop).await.expect("the signal ended the future");
    }
}
