//! The replication connection honours `sslmode` like the pool: through a front that takes
//! TLS only (`scripts/pg_tls_proxy.py`, since the local Postgres build has no SSL), with
//! `verify-full` against the front's CA, the capture streams and the lake equals the
//! tables; a certificate from another CA is refused with an error that says so.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fibonacco_ingest::Ingest;

use crate::support::*;

/// `scripts/pg_tls_proxy.py` in front of the shared test server, until dropped.
struct TlsFront {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl TlsFront {
    fn start() -> Self {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let server = url::Url::parse(&fibonacco_platform::testing::database_url()).unwrap();
        let upstream = format!("{}:{}", server.host_str().unwrap(), server.port().unwrap_or(5432));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("fib-tls-{}-{nanos}", std::process::id()));
        let mut child = Command::new(format!("{root}/.venv/bin/python"))
            .arg(format!("{root}/scripts/pg_tls_proxy.py"))
            .args(["--upstream", &upstream, "--dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the stack's venv has python (scripts/stack.sh up)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the TLS front printed {line:?}, not its port"));
        Self { child, dir, port }
    }

    /// The shared server's URL through this front, by name (the certificate's), with
    /// `query` added.
    fn url(&self, query: &str) -> String {
        let mut url = url::Url::parse(&fibonacco_platform::testing::database_url()).unwrap();
        url.set_host(Some("localhost")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.set_query(Some(query));
        url.to_string()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn replication_over_verified_tls_streams_into_the_lake() {
    let front = TlsFront::start();
    let ca = front.dir.join("ca.crt");
    let fx = Fixture::on(&front.url(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))).await;
    for n in 1..=10 {
        insert_item(fx.pool(), n).await;
    }
    // Snapshot and stream both go through the front, which refuses anything but TLS.
    let running = start(fx.config()).await;
    for n in 11..=20 {
        insert_item(fx.pool(), n).await;
    }
    sqlx::query("update cdc_items set label = 'over tls' where n % 3 = 0").execute(fx.pool()).await.unwrap();
    converge(&fx, Duration::from_secs(30)).await;
    assert_no_duplicates(&fx.lake).await;
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_clearly() {
    let front = TlsFront::start();
    let fx =
        Fixture::on(&front.url(&format!("sslmode=verify-full&sslrootcert={}", front.dir.join("ca.crt").display())))
            .await;
    // The front's own leaf certificate as the only root: it is no CA, so the server's
    // certificate (issued by the front's CA) chains to nothing trusted.
    let mut config = fx.config();
    config.database_url = fibonacco_platform::config::Secret::new(fx.db.url.replace("ca.crt", "server.crt"));
    assert!(config.database_url.expose().contains("server.crt"));
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        match Ingest::connect(config).await {
            Ok(ingest) => ingest.run(std::future::pending()).await,
            Err(e) => Err(e),
        }
    })
    .await
    .expect("a refused certificate ends the attempt instead of hanging");
    let error = outcome.expect_err("a certificate from another CA was accepted").to_string();
    assert!(error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"), "{error}");
    fx.cleanup().await;
}
