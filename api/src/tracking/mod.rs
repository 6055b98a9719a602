//! The public links inside campaign e-mails: the open pixel, click redirects and
//! unsubscribe. They need no login (the recipient token is signed), answer fast, and
//! record what happened on the recipient and as customer activity.

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use fibonacco_delivery::{
    campaigns::store::{Engagement, recipient_links, record_engagement},
    links::{parse_recipient_token, url_signature_valid},
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/t/open/{token}", get(open))
        .route("/t/click/{token}", get(click))
        .route("/t/unsubscribe/{token}", get(unsubscribe_page).post(unsubscribe))
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn pixel() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=0")),
        ],
        PIXEL,
    )
        .into_response()
}

/// A scanner or prefetcher rather than the person (`campaigns::store::is_machine`).
fn machine(method: &axum::http::Method, headers: &axum::http::HeaderMap) -> bool {
    let agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    fibonacco_delivery::campaigns::store::is_machine(method.as_str(), agent)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )))
        .into_response()
}

/// Open pixel. Always answers with the image, whatever happened, so a mail client
/// never shows a broken picture; a bad token records nothing.
#[utoipa::path(get, path = "/t/open/{token}", tag = "tracking",
    params(("token" = String, Path, description = "Signed recipient token")),
    responses((status = 200, description = "A 1×1 transparent GIF", content_type = "image/gif")))]
pub async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
) -> Response {
    let what = if machine(&method, &headers) { Engagement::MachineOpen } else { Engagement::Open };
    if let Some(who) = parse_recipient_token(state.config.app_key.expose(), &token)
        && let Err(e) = record_engagement(&state.pool, who, what, serde_json::json!({})).await
    {
        tracing::warn!(error = %e, "open not recorded");
    }
    pixel()
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ClickQuery {
    /// The destination, as the campaign's e-mail carried it.
    pub u: Option<String>,
    /// The destination's signature.
    pub s: Option<String>,
}

/// Click redirect: only to a destination the campaign's own template links to, signed for
/// this recipient (no open redirect); anything else is a 404.
#[utoipa::path(get, path = "/t/click/{token}", tag = "tracking",
    params(("token" = String, Path, description = "Signed recipient token"), ClickQuery),
    responses((status = 303, description = "Redirect to the campaign's link"),
        (status = 404, description = "Unknown or tampered link; no redirect", content_type = "text/html"),
        (status = 503, description = "The destination could not be checked; no redirect", content_type = "text/html")))]
pub async fn click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<ClickQuery>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
) -> Response {
    let key = state.config.app_key.expose();
    let (Some(who), Some(url), Some(sig)) = (parse_recipient_token(key, &token), q.u, q.s) else {
        return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>");
    };
    let signed =
        (url.starts_with("https://") || url.starts_with("http://")) && url_signature_valid(key, &token, &url, &sig);
    if !signed {
        return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>");
    }
    // Signed is not enough: the destination must be one of the links the campaign's own
    // template carries, for a recipient that exists.
    match recipient_links(&state.pool, who).await {
        Ok(Some(links)) if links.contains(&url) => {}
        Ok(_) => return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>"),
        Err(e) => {
            tracing::error!(error = %e, "click destination not checked");
            return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p>Please try again in a moment.</p>");
        }
    }
    // A template link may be an IRI (non-ASCII host, path or query): a Location header is
    // ASCII, so it goes out as the URL's ASCII form (IDNA host, percent-encoded rest).
    let Some(location) = url::Url::parse(&url).ok().filter(|u| HeaderValue::from_str(u.as_str()).is_ok()) else {
        return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>");
    };
    let what = if machine(&method, &headers) { Engagement::MachineClick } else { Engagement::Click };
    if let Err(e) = record_engagement(&state.pool, who, what, serde_json::json!({"url": url})).await {
        tracing::warn!(error = %e, "click not recorded");
    }
    Redirect::to(location.as_str()).into_response()
}

/// Unsubscribe confirmation page. The change itself is a POST, so link scanners that
/// fetch every URL in a message do not unsubscribe anyone.
#[utoipa::path(get, path = "/t/unsubscribe/{token}", tag = "tracking",
    params(("token" = String, Path, description = "Signed recipient token")),
    responses((status = 200, description = "A page with the unsubscribe button", content_type = "text/html"),
        (status = 404, content_type = "text/html")))]
pub async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if parse_recipient_token(state.config.app_key.expose(), &token).is_none() {
        return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>");
    }
    page(
        StatusCode::OK,
        "Unsubscribe",
        "<form method=\"post\"><p>Stop receiving these messages?</p><button type=\"submit\">Unsubscribe</button></form>",
    )
}

/// Unsubscribe (the page's button, or a mail client's RFC 8058 one-click POST). The
/// customer receives no further campaign; the recipient and an activity record it.
#[utoipa::path(post, path = "/t/unsubscribe/{token}", tag = "tracking",
    params(("token" = String, Path, description = "Signed recipient token")),
    responses((status = 200, description = "Unsubscribed", content_type = "text/html"),
        (status = 404, content_type = "text/html"), (status = 503, content_type = "text/html")))]
pub async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(who) = parse_recipient_token(state.config.app_key.expose(), &token) else {
        return page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>");
    };
    match record_engagement(&state.pool, who, Engagement::Unsubscribe, serde_json::json!({})).await {
        Ok(Some(_)) => page(StatusCode::OK, "Unsubscribed", "<p>You will not receive these messages any more.</p>"),
        Ok(None) => page(StatusCode::NOT_FOUND, "Link not found", "<p>This link is not valid.</p>"),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe not recorded");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>We could not record this right now. Please try again.</p>",
            )
        }
    }
}
