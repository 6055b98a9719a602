//! Customer import from CSV, end to end: upload, the queued job, upsert by e-mail or
//! phone, the error report, dry runs, re-imports and another tenant's view.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use fibonacco_api::{customers::import::WithImports, testing::TestApp};
use fibonacco_platform::{
    TenantId, db,
    queue::{Handler, JobError, Reserved},
};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Fails any job that is not an import: the test's queue only carries imports.
struct NothingElse;

impl Handler for NothingElse {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { Err(JobError::fail(format!("unexpected job {}", job.payload.job))) })
    }
}

/// Runs the next job on the `imports` queue the way a worker does.
async fn run_next_import(app: &TestApp) {
    let job = app.state.queue.pop("imports", Duration::from_secs(60)).await.unwrap().unwrap().unwrap();
    let worker = WithImports { pool: app.db.pool.clone(), inner: NothingElse };
    worker.handle(&job).await.unwrap();
    app.state.queue.ack(&job).await.unwrap();
}

async fn upload(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.send("POST", "/api/v1/customers/import", Some(token), Some(body)).await
}

/// Uploads and runs an import; returns the finished import.
async fn import(app: &TestApp, csv: &str, dry_run: bool) -> Value {
    let (s, queued) =
        upload(app, &app.token_a, json!({"csv": csv, "file_name": "people.csv", "dry_run": dry_run})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["data"]["status"], "queued");
    run_next_import(app).await;
    let id = queued["data"]["id"].as_str().unwrap();
    let (s, done) = app.get(&format!("/api/v1/imports/{id}"), &app.token_a).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["data"]["status"], "completed", "{done}");
    done["data"].clone()
}

async fn customers(app: &TestApp, tenant: TenantId) -> Vec<(String, Option<String>, Option<String>, Value)> {
    let mut tx = db::begin_tenant(&app.db.pool, tenant).await.unwrap();
    let rows =
        sqlx::query_as("select name, email, phone, metadata from crm_customers where tenant_id = $1 order by name")
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    rows
}

fn counts(import: &Value) -> [i64; 6] {
    ["created_count", "updated_count", "unchanged_count", "duplicate_rows", "error_rows", "processed_rows"]
        .map(|k| import[k].as_i64().unwrap())
}

const FILE: &str = "First Name,Last Name,E-mail Address,Mobile,Tags,Plan
Ada,Lovelace,ADA@example.com,,vip;speaker,gold
Bob,Builder,bob@example.com,,,
Bob,Builder,Bob@Example.com,+1 555 010 2000,new,
Carol,,,+15550103000,,silver
Dan,,not-an-address,,,
Eve,,,,,
Fay,,fay@example.com
,,nobody@example.com,,,
";

#[tokio::test]
async fn an_import_upserts_by_email_or_phone_and_never_creates_anyone_twice() {
    let app = TestApp::spawn().await;
    let ada = app
        .customer(&app.token_a, json!({"name": "Ada", "email": "ada@example.com", "metadata": {"tags": ["early"]}}))
        .await;
    let before = customers(&app, app.tenant_a).await;

    // A dry run counts and reports, and writes nothing.
    let dry = import(&app, FILE, true).await;
    assert_eq!(counts(&dry), [2, 1, 0, 1, 4, 8], "created, updated, unchanged, duplicates, errors, rows: {dry}");
    assert_eq!(customers(&app, app.tenant_a).await, before, "a dry run writes no customer");

    let first = import(&app, FILE, false).await;
    assert_eq!(counts(&first), [2, 1, 0, 1, 4, 8], "{first}");
    let people = customers(&app, app.tenant_a).await;
    let names: Vec<&str> = people.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, vec!["Ada Lovelace", "Bob Builder", "Carol"], "Bob once, however often the file names him");
    let (_, email, _, metadata) = &people[0];
    assert_eq!(email.as_deref(), Some("ada@example.com"), "the stored address keeps its letter case");
    assert_eq!(metadata["tags"], json!(["early", "vip", "speaker"]), "tags are added, never dropped");
    assert_eq!(metadata["plan"], "gold");
    assert_eq!(people[1].2.as_deref(), Some("+15550102000"), "the duplicate row filled Bob's phone");
    assert_eq!(people[1].3["tags"], json!(["new"]));
    let (_, shown) = app.get(&format!("/api/v1/customers/{}", ada["id"].as_str().unwrap()), &app.token_a).await;
    assert_eq!(shown["data"]["name"], "Ada Lovelace", "the existing customer was updated in place");

    // The same file again: nobody new, nothing to change.
    let again = import(&app, FILE, false).await;
    assert_eq!(counts(&again), [0, 0, 4, 1, 4, 8], "{again}");
    assert_eq!(customers(&app, app.tenant_a).await.len(), 3);

    // The report: each refused row with the field and why, never the value.
    let id = first["id"].as_str().unwrap();
    let req = Request::get(format!("/api/v1/imports/{id}/errors"))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token_a))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let report = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "row,field,message");
    let rows: Vec<String> = lines[1..].iter().map(|l| l.splitn(3, ',').take(2).collect::<Vec<_>>().join(",")).collect();
    assert_eq!(rows, ["6,email", "7,email", "8,row", "9,name"], "{report}");
    assert!(!report.contains("not-an-address") && !report.contains("nobody@"), "{report}");

    // Another tenant sees neither the import nor its report, and got no customer.
    for path in [format!("/api/v1/imports/{id}"), format!("/api/v1/imports/{id}/errors")] {
        let (s, _) = app.get(&path, &app.token_b).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(customers(&app, app.tenant_b).await.is_empty());
}

#[tokio::test]
async fn an_upload_that_cannot_be_imported_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let t = app.token_a.clone();
    for (body, field) in [
        (json!({}), "csv"),
        (json!({"csv": "  "}), "csv"),
        (json!({"csv": "Name,City\nAda,London\n"}), "mapping"),
        (json!({"csv": "Name,Email\n"}), "csv"),
        (json!({"csv": "Name,Email\nAda,a@example.com\n", "mapping": {"Nope": "email"}}), "mapping.Nope"),
        (json!({"csv": "Name,Email\nAda,a@example.com\n", "mapping": {"Name": "birthday"}}), "mapping.Name"),
        (json!({"csv": "Name,Email\nAda,a@example.com\n", "file_name": "a\nb"}), "file_name"),
        (
            json!({"csv": format!("Name,Email,{}\nAda,a@example.com\n", (0..300).map(|i| format!("c{i}")).collect::<Vec<_>>().join(","))}),
            "csv",
        ),
    ] {
        let (s, r) = upload(&app, &t, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
        assert!(r["error"]["details"][field].is_array(), "{field}: {r}");
    }
    let reader = app.token_with(app.tenant_a, &["customers:read"], None).await;
    let (s, _) = upload(&app, &reader, json!({"csv": "Name,Email\nAda,a@example.com\n"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(app.state.queue.sizes("imports").await.unwrap().ready, 0, "nothing was queued");
    // A semicolon file with a mapping: read as such.
    let done = import(&app, "Name;E-Mail;Firma\nZoë Müller;zoe@example.de;Müller GmbH\n", false).await;
    assert_eq!(counts(&done), [1, 0, 0, 0, 0, 1], "{done}");
    let people = customers(&app, app.tenant_a).await;
    assert_eq!(people[0].0, "Zoë Müller");
    assert_eq!(people[0].3["firma"], "Müller GmbH", "an unknown column is a custom field");
}

#[tokio::test]
async fn an_import_job_delivered_twice_applies_each_row_once() {
    let app = TestApp::spawn().await;
    let mut csv = String::from("Name,Email\n");
    for i in 0..4500 {
        csv.push_str(&format!("Person {i},p{i}@example.com\n"));
    }
    let (s, queued) = upload(&app, &app.token_a, json!({"csv": csv})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    let id: uuid::Uuid = queued["data"]["id"].as_str().unwrap().parse().unwrap();
    // Two runs at once, as a redelivered job would make: chunks are taken in turn and
    // a run that finds another ahead stops.
    let run = || fibonacco_api::customers::import::run::run(&app.db.pool, app.tenant_a, id, &|_| {});
    let (a, b) = tokio::join!(run(), run());
    a.unwrap();
    b.unwrap();
    let (_, done) = app.get(&format!("/api/v1/imports/{id}"), &app.token_a).await;
    assert_eq!(counts(&done["data"]), [4500, 0, 0, 0, 0, 4500], "{done}");
    assert_eq!(customers(&app, app.tenant_a).await.len(), 4500);
}

/// The export streams what the list shows, in its order, across pages, and defuses
/// formulas; another tenant's export holds none of it.
#[tokio::test]
async fn an_export_streams_the_rows_the_list_shows() {
    let app = TestApp::spawn().await;
    let mut csv = String::from("Name,Email,Phone\n");
    for i in 0..2500 {
        let name = match i % 5 {
            0 => format!("=HYPERLINK(\"http://evil.example\",\"{i}\")"),
            1 => format!("Müller, Zoë {i}"),
            2 => format!("Say \"hi\" {i}"),
            _ => format!("Person {i}"),
        };
        let email = if i % 7 == 0 { String::new() } else { format!("p{i}@example.com") };
        csv.push_str(&format!("\"{}\",{email},+1555{i:07}\n", name.replace('"', "\"\"")));
    }
    let done = import(&app, &csv, false).await;
    assert_eq!(done["created_count"], 2500, "{done}");

    let export = |token: String, query: &'static str| {
        let router = app.router.clone();
        async move {
            let req = Request::get(format!("/api/v1/customers/export{query}"))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let (s, text) = export(app.token_a.clone(), "?sort=name&has_email=true").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let exported: Vec<(String, String)> =
        reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_owned(), r[1].to_owned())).collect();

    // The list endpoint, page by page, with the same filter and order.
    let mut listed: Vec<(String, String)> = Vec::new();
    for page in 1.. {
        let (s, body) =
            app.get(&format!("/api/v1/customers?sort=name&has_email=true&per_page=50&page={page}"), &app.token_a).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let rows = body["data"].as_array().unwrap();
        listed.extend(
            rows.iter().map(|c| (c["id"].as_str().unwrap().to_owned(), c["name"].as_str().unwrap().to_owned())),
        );
        if rows.len() < 50 {
            break;
        }
    }
    assert_eq!(exported.len(), 2500 - 358, "every customer with an address");
    let ids = |v: &[(String, String)]| v.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&exported), ids(&listed), "the same rows in the same order");
    for ((_, shown), (_, stored)) in exported.iter().zip(&listed) {
        if stored.starts_with('=') {
            assert_eq!(shown, &format!("'{stored}"), "a formula is defused");
        } else {
            assert_eq!(shown, stored, "text round-trips: quotes, commas, accents");
        }
    }

    let (s, other) = export(app.token_b.clone(), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(other.lines().count(), 1, "another tenant's export is its header alone: {other}");
    let (s, _) = export(app.token_a.clone(), "?format=xlsx").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let writer = app.token_with(app.tenant_a, &["outbound:read"], None).await;
    let (s, _) = export(writer, "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Redis lost the import's job: the scheduler's `imports:resume` queues it again once the
/// imports queue has drained, and the import completes once.
#[tokio::test]
async fn an_import_whose_job_was_lost_is_resumed_by_the_scheduler() {
    use fibonacco_delivery::scheduler::{Scheduler, tasks};
    let app = TestApp::spawn().await;
    let (s, queued) =
        upload(&app, &app.token_a, json!({"csv": "Name,Email\nA,a@example.com\nB,b@example.com\n"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    let id = queued["data"]["id"].as_str().unwrap().to_owned();
    app.state.queue.clear("imports").await.unwrap();
    let sweep = Scheduler::new(app.db.pool.clone(), app.state.queue.clone());
    assert_eq!(tasks::run(&sweep, "imports:resume").await.unwrap(), "1 imports re-queued");
    assert_eq!(
        tasks::run(&sweep, "imports:resume").await.unwrap(),
        "1 import jobs still queued; nothing added",
        "no second job while one waits"
    );
    run_next_import(&app).await;
    let (_, done) = app.get(&format!("/api/v1/imports/{id}"), &app.token_a).await;
    assert_eq!((done["data"]["status"].as_str(), done["data"]["created_count"].as_i64()), (Some("completed"), Some(2)));
    assert_eq!(tasks::run(&sweep, "imports:resume").await.unwrap(), "0 imports re-queued");
}

/// The Parquet export holds the CSV export's rows in the same order, typed, in row groups
/// written as the rows are read; an empty selection is still a valid file.
#[tokio::test]
async fn a_parquet_export_holds_the_csv_exports_rows_typed() {
    use arrow_array::Array;
    use fibonacco_api::customers::export_parquet::ROW_GROUP;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let app = TestApp::spawn().await;
    let n = ROW_GROUP + 2_345;
    let mut csv = String::from("Name,Email,Tags\n");
    for i in 0..n {
        csv.push_str(&format!("Person {i},p{i}@example.com,\"vip;wave {}\"\n", i % 3));
    }
    assert_eq!(import(&app, &csv, false).await["created_count"], n, "seeded");
    let export = async |token: &str, query: &str| {
        let req = Request::get(format!("/api/v1/customers/export{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = app.router.clone().oneshot(req).await.unwrap();
        let (status, kind) = (res.status(), res.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned());
        (status, kind, axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap())
    };
    let (s, kind, file) = export(&app.token_a, "?format=parquet&sort=-name").await;
    assert_eq!((s, kind.as_str()), (StatusCode::OK, "application/vnd.apache.parquet"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(builder.metadata().num_row_groups(), 2, "one row group per {ROW_GROUP} customers");
    let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let mut ids = Vec::new();
    for b in &batches {
        let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        ids.extend(id.iter().map(|v| v.unwrap().to_owned()));
        let created = b.column_by_name("created_at").unwrap();
        assert!(matches!(created.data_type(), arrow_schema::DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC"));
        let tags = b.column_by_name("tags").unwrap().as_any().downcast_ref::<arrow_array::ListArray>().unwrap();
        let first = tags.value(0);
        let first = first.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        assert_eq!(first.len(), 2, "tags are a list");
        assert_eq!(first.value(0), "vip");
    }
    let (_, _, csv_file) = export(&app.token_a, "?sort=-name").await;
    let csv_ids: Vec<String> =
        csv::Reader::from_reader(&csv_file[..]).records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(ids.len(), n);
    assert_eq!(ids, csv_ids, "the same rows in the same order as the CSV export");

    // The same as a job: queued, written by a worker, downloaded, the same rows.
    let (s, queued) = app
        .send(
            "POST",
            "/api/v1/customers/exports",
            Some(&app.token_a),
            Some(serde_json::json!({"format": "parquet", "sort": "-name"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    let job = queued["data"]["id"].as_str().unwrap().to_owned();
    let (s, _, _) = export(&app.token_a, &format!("s/{job}/download")).await;
    assert_eq!(s, StatusCode::CONFLICT, "not written yet");
    run_next_import(&app).await;
    let (_, done) = app.get(&format!("/api/v1/customers/exports/{job}"), &app.token_a).await;
    assert_eq!(
        (done["data"]["status"].as_str(), done["data"]["rows"].as_u64()),
        (Some("done"), Some(n as u64)),
        "{done}"
    );
    let (s, kind, file) = export(&app.token_a, &format!("s/{job}/download")).await;
    assert_eq!((s, kind.as_str()), (StatusCode::OK, "application/vnd.apache.parquet"));
    assert_eq!(done["data"]["bytes"].as_u64(), Some(file.len() as u64));
    let mut job_ids = Vec::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
        let b = b.unwrap();
        let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        job_ids.extend(id.iter().map(|v| v.unwrap().to_owned()));
    }
    assert_eq!(job_ids, ids, "the job's file holds the streamed export's rows in order");
    assert_eq!(app.get(&format!("/api/v1/customers/exports/{job}"), &app.token_b).await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = export(&app.token_b, &format!("s/{job}/download")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant cannot download it");
    let (s, bad) = app
        .send(
            "POST",
            "/api/v1/customers/exports",
            Some(&app.token_a),
            Some(serde_json::json!({"format": "xlsx", "sort": "size"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    let (s, _, empty) = export(&app.token_b, "?format=parquet").await;
    assert_eq!(s, StatusCode::OK);
    let reader = ParquetRecordBatchReaderBuilder::try_new(empty).unwrap().build().unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0, "another tenant's export is empty and valid");
}

/// A time zone column sets each customer's zone (quiet hours apply in it); a zone the tz
/// database does not know is that row's error (the row is left out, as for any bad cell).
#[tokio::test]
async fn an_import_sets_time_zones_and_reports_unknown_ones() {
    let app = TestApp::spawn().await;
    let csv =
        "Name,Email,Time Zone\nAda,ada@example.com,Europe/Berlin\nBob,bob@example.com,Mars/Base\nCy,cy@example.com,\n";
    let done = import(&app, csv, false).await;
    assert_eq!((done["created_count"].as_i64(), done["error_rows"].as_i64()), (Some(2), Some(1)), "{done}");
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let zones: Vec<(String, Option<String>)> =
        sqlx::query_as("select name, timezone from crm_customers where tenant_id = $1 order by name")
            .bind(app.tenant_a)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(zones, vec![("Ada".to_owned(), Some("Europe/Berlin".to_owned())), ("Cy".to_owned(), None)]);
    // Re-importing with a zone updates it; an empty cell keeps it.
    let done = import(&app, "Email,Timezone\nada@example.com,\ncy@example.com,Asia/Tokyo\n", false).await;
    assert_eq!(done["updated_count"], 1, "{done}");
    let (_, listed) = app.get("/api/v1/customers?sort=name", &app.token_a).await;
    let shown: Vec<Value> = listed["data"].as_array().unwrap().iter().map(|c| c["timezone"].clone()).collect();
    assert_eq!(shown, vec![json!("Europe/Berlin"), json!("Asia/Tokyo")]);
}
