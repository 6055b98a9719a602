//! Hostile input answers 4xx naming the field — never a 500 or a panic: NUL characters
//! (which Postgres text cannot hold) in bodies and queries, dates outside what Postgres or
//! date arithmetic can represent, and page numbers that overflow an offset.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use serde_json::json;

fn field_error<'a>(body: &'a serde_json::Value, field: &str) -> Option<&'a serde_json::Value> {
    body["error"]["details"].get(field)
}

#[tokio::test]
async fn a_nul_character_in_a_body_or_a_query_is_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let (s, body) = app.send("POST", "/api/v1/customers", t, Some(json!({"name": "A\u{0}B"}))).await;
    assert_eq!((s, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED"), "{body}");
    assert!(field_error(&body, "name").is_some(), "{body}");
    // Inside nested objects and arrays too, with the path named.
    let (s, body) =
        app.send("POST", "/api/v1/articles", t, Some(json!({"title": "T", "metadata": {"k": ["ok", "x\u{0}"]}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "metadata.k[1]").is_some(), "{body}");
    // A backslash followed by "u0000" is text, not NUL: accepted.
    let (s, body) = app.send("POST", "/api/v1/customers", t, Some(json!({"name": "A\\u0000B"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = app.get("/api/v1/customers?search=a%00b", &app.token_a).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "search").is_some(), "{body}");
}

#[tokio::test]
async fn analytics_dates_outside_the_calendar_we_store_are_a_422() {
    let app = TestApp::spawn().await;
    for query in ["to=-262144-01-01", "from=-5000-01-01&to=-5000-01-10", "from=99999-01-01&to=99999-01-05"] {
        let (s, body) = app.get(&format!("/api/v1/crm/analytics/interest?{query}"), &app.token_a).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        let named = field_error(&body, "from").or_else(|| field_error(&body, "to"));
        assert!(named.is_some(), "{query}: {body}");
    }
}

#[tokio::test]
async fn a_search_page_that_overflows_an_offset_is_a_422() {
    let app = TestApp::spawn().await;
    let (s, body) = app.get("/api/v1/search?q=refunds&page=9223372036854775807", &app.token_a).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "page").is_some(), "{body}");
}

/// Found by schemathesis: a number near `f64::MAX` in a stored JSON object made its row
/// unreadable (Postgres prints the number back in full, and it no longer parses as a
/// float), so creating it answered 500 after storing it, and every list of it after.
#[tokio::test]
async fn a_number_too_large_to_read_back_is_refused_and_never_stored() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let huge = json!({"name": "Reminder", "body": "Hi", "metadata": {"limits": [1, 1.7976931348623157e308]}});
    let (s, body) = app.send("POST", "/api/v1/outbound/sms/templates", t, Some(huge)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "metadata.limits[1]").is_some(), "{body}");
    let large = json!({"name": "Reminder", "body": "Hi", "metadata": {"limits": [-1e300, 1e300, 5e-324]}});
    let (s, body) = app.send("POST", "/api/v1/outbound/sms/templates", t, Some(large)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, list) = app.get("/api/v1/outbound/sms/templates", &app.token_a).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn control_characters_in_a_body_field_are_a_422_naming_it() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let (s, body) =
        app.send("POST", "/api/v1/customers", t, Some(json!({"name": "Bell\u{7}Co", "email": "a@b.example"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "name").is_some(), "{body}");
    let (s, body) = app
        .send(
            "POST",
            "/api/v1/customers",
            t,
            Some(json!({"name": "Caf\u{e9} \u{dc}nicode \u{1F600}", "phone": "+1 555 010 9999"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Found by schemathesis: -5e-324 rounded to -0.0 as an f32 and passed as a temperature
/// of 0, though it is below the documented minimum.
#[tokio::test]
async fn a_tiny_negative_temperature_is_refused_not_rounded_to_zero() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let (s, body) = app
        .send(
            "POST",
            "/api/v1/personalities",
            t,
            Some(json!({"name": "Cold", "system_prompt": "x", "temperature": -5e-324})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "temperature").is_some(), "{body}");
    let (s, body) = app
        .send(
            "POST",
            "/api/v1/personalities",
            t,
            Some(json!({"name": "Calm", "system_prompt": "x", "temperature": 0.0})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}
