//! Start-up and shutdown of a node, linear and logged:
//! config → database + migrations → store → (model, workers: later issues) → DIMSE → HTTP.
//! One cancellation token stops everything.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::config::Config;
use crate::db::jobs::JobQueue;
use crate::db::{self, DbError, IndexRepo};
use crate::dimse::{DimseContext, DimseServer};
use crate::http::HttpServer;
use crate::ingest::{Ingestor, MemoryLimits, Spool};
use crate::metrics::Metrics;
use crate::store::{BlobStore, StoreError};

/// Shared state handed to every surface.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub repo: IndexRepo,
    pub store: BlobStore,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    /// The audit trail writer (one per node).
    pub audit: Audit,
    /// The durable job queue, as this node.
    pub jobs: JobQueue,
    /// Wakes this node's AI workers when a job is queued here.
    pub ai_wake: Arc<Notify>,
    /// Authentication (tokens, logins) and the identity repository.
    pub auth: crate::auth::AuthService,
}

impl AppState {
    /// The last step of a run (`serve` after the listeners drained, `import`,
    /// `user add`):
    /// commit the audit events still queued, then close the index database.
    pub async fn close(&self) {
        self.audit.flush().await;
        if let Err(e) = self.repo.close().await {
            tracing::warn!(error = %e, "closing the index database failed");
        }
    }
}

/// Errors during start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "[auth] jwt_secret is the built-in development key; set a secret of your own \
         (GLIA__AUTH__JWT_SECRET) to run in [node] mode = \"production\""
    )]
    DevJwtSecret,
    #[error("spool directory: {0}")]
    Spool(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::dimse::tls::TlsError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Open the database (running migrations), the blob store and the spool; build the
/// shared state. Used by `serve` and `import`.
pub async fn open_state(config: Config) -> Result<AppState, StartError> {
    let conn = db::open(&config.database.url, config.database.max_connections).await?;
    tracing::info!(
        backend = db::backend_name(&conn),
        "index database ready (migrations applied)"
    );

    let store = BlobStore::from_config(&config.storage)?;
    store.probe().await?;
    tracing::info!(store = store.describe(), "blob store ready");

    let spool = Spool::with_memory(
        &config.ingest.spool_dir,
        MemoryLimits {
            per_object: config.ingest.memory_spool_object_bytes,
            total: config.ingest.memory_spool_total_bytes,
        },
    )
    .map_err(StartError::Spool)?;
    let cleaned = spool.clean().map_err(StartError::Spool)?;
    if cleaned > 0 {
        tracing::warn!(
            files = cleaned,
            "removed spool leftovers of an interrupted run"
        );
    }

    let metrics = Arc::new(Metrics::new());
    let repo = IndexRepo::new(conn)
        .with_sqlite_writer(&config.database.url)
        .await?;
    let folded = repo.backfill_fuzzy_names().await?;
    if folded > 0 {
        tracing::info!(rows = folded, "person names folded for fuzzy matching");
    }
    let ingestor = Ingestor::new(
        store.clone(),
        repo.clone(),
        spool,
        config.ingest.duplicate_policy,
        metrics.clone(),
    )
    .with_bulk_threshold(config.dicomweb.bulk_data_threshold);
    let audit = Audit::start(repo.connection().clone());
    let jobs = JobQueue::new(
        repo.connection().clone(),
        node_name(&config),
        std::time::Duration::from_secs(config.ai.retry_base_secs.max(1)),
    );
    let auth = crate::auth::AuthService::new(
        crate::db::identity::IdentityRepo::new(repo.connection().clone()),
        &config.auth,
        audit.clone(),
    );
    Ok(AppState {
        auth,
        config: Arc::new(config),
        repo,
        store,
        ingestor,
        metrics,
        audit,
        jobs,
        ai_wake: Arc::new(Notify::new()),
    })
}

/// Refuse settings a production node must not run with (the development JWT key).
pub fn check_production(config: &Config) -> Result<(), StartError> {
    if config.node.mode == crate::config::NodeMode::Production
        && config.auth.jwt_secret == crate::config::DEV_JWT_SECRET
    {
        return Err(StartError::DevJwtSecret);
    }
    if config.auth.jwt_secret == crate::config::DEV_JWT_SECRET {
        tracing::warn!("[auth] jwt_secret is the development key; fine for dev mode only");
    }
    Ok(())
}

/// This node's name in the job queue: `[ai] node_name`, else host name and HTTP port
/// (stable across restarts, distinct for two nodes on one host).
pub fn node_name(config: &Config) -> String {
    if !config.ai.node_name.trim().is_empty() {
        return config.ai.node_name.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "glia".into());
    format!("{host}:{}", config.http.port)
}

/// A started node.
pub struct RunningNode {
    pub dimse_addr: SocketAddr,
    /// The DICOM TLS listener's address (`[dimse.tls] enabled`).
    pub dimse_tls_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// The token that stops the node.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop and wait for the listeners to drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Wait until the node has stopped (after the token is cancelled).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Start a node: state, DIMSE listener, HTTP server.
pub async fn start(config: Config) -> Result<RunningNode, StartError> {
    check_production(&config)?;
    let state = open_state(config).await?;
    let cfg = state.config.clone();
    let shutdown = CancellationToken::new();

    let mut tasks = Vec::new();
    if cfg.ai.enabled {
        let model = crate::ai::worker::load_model(&cfg.ai).await;
        match &model {
            Ok(m) => {
                tracing::info!(model = %m.name, version = %m.version, "segmentation model loaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "segmentation model failed to load; AI jobs will fail until it is fixed")
            }
        }
        tasks.extend(crate::ai::worker::start(state.clone(), model, shutdown.clone()).await);
        tracing::info!(workers = cfg.ai.workers, stable_age_s = cfg.ai.stable_age, node = %state.jobs.node(), "AI workers up");
    } else {
        tracing::info!("AI pipeline disabled ([ai] enabled = false)");
    }

    let dimse_addr = SocketAddr::new(cfg.dimse.bind, cfg.dimse.port);
    let tls = if cfg.dimse.tls.enabled {
        Some(crate::dimse::tls::acceptor(&cfg.dimse.tls)?)
    } else {
        None
    };
    let access = crate::dimse::access::AccessPolicy::new(&cfg.dimse, cfg.node.mode);
    tracing::info!(
        require_known_peers = access.require_known_peers(),
        peers = cfg.dimse.peers.len(),
        "DIMSE access"
    );
    let dimse = DimseServer::bind(
        DimseContext {
            config: cfg.dimse.clone(),
            query: cfg.query.clone(),
            ingestor: state.ingestor.clone(),
            repo: state.repo.clone(),
            store: state.store.clone(),
            metrics: state.metrics.clone(),
            ai_trigger: crate::ai::worker::AiTrigger::new(&state),
            access,
            audit: state.audit.clone(),
        },
        tls,
    )
    .await
    .map_err(|source| StartError::Bind {
        what: "DIMSE",
        addr: dimse_addr,
        source,
    })?;
    let dimse_addr = dimse.local_addr().unwrap_or(dimse_addr);
    let dimse_tls_addr = dimse.tls_local_addr();
    tracing::info!(ae_title = %cfg.dimse.ae_title, addr = %dimse_addr, tls = ?dimse_tls_addr, "DIMSE listener up");

    let http_addr = SocketAddr::new(cfg.http.bind, cfg.http.port);
    let http = HttpServer::bind(http_addr, state.clone())
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: http_addr,
            source,
        })?;
    let http_addr = http.local_addr().unwrap_or(http_addr);
    tracing::info!(addr = %http_addr, "HTTP server up");

    let t1 = tokio::spawn(dimse.run(shutdown.clone()));
    let token = shutdown.clone();
    let t2 = tokio::spawn(async move {
        if let Err(e) = http.run(token).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(RunningNode {
        dimse_addr,
        dimse_tls_addr,
        http_addr,
        state,
        shutdown,
        tasks: {
            tasks.push(t1);
            tasks.push(t2);
            tasks
        },
    })
}

/// Resolve when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
    }
}
