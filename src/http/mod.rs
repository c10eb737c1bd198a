//! The HTTP server (poem): `/health`, `/metrics`, DICOMweb under `/dicom-web`, the
//! OpenAPI API under `/api` (spec at `/api/openapi.json`, Swagger UI at `/api/docs`);
//! the web viewer at `/viewer` when `[http] viewer_dir` is set; CORS per
//! `[http] cors_origins`; requests over `[http] max_request_bytes` are refused (413).
//! Every request is authenticated and authorised by one middleware,
//! [`authz::Authz`], against the rule table in `crate::auth::policy`.

pub mod authz;
pub mod cors;
pub mod viewer;

use std::net::SocketAddr;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{get, handler, EndpointExt, Route, Server};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;

#[handler]
fn metrics(Data(state): Data<&AppState>) -> String {
    state.metrics.render()
}

/// Build the route table.
pub fn routes(state: AppState) -> impl poem::Endpoint {
    let api = crate::api::service(state.clone());
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    // Only the health resource is also served at the root (`GET /health`).
    let health = poem_openapi::OpenApiService::new(
        crate::api::health::HealthApi {
            state: state.clone(),
        },
        "Glia",
        env!("CARGO_PKG_VERSION"),
    );
    let route = Route::new()
        .nest("/api/openapi.json", spec)
        .nest("/api/docs", docs)
        .nest("/api", api.around(crate::api::error::json_errors))
        .at("/metrics", get(metrics))
        .nest("/dicom-web", crate::dicomweb::routes())
        .at("/wado", get(crate::dicomweb::wado_uri::wado))
        .nest("/", health);
    with_viewer(route, &state.config.http.viewer_dir)
        .with(authz::Authz)
        .with(BodyLimit(state.config.http.max_request_bytes))
        .with(cors::ScopedCors(cors::policy(
            &state.config.http.cors_origins,
        )))
        .data(state)
}

/// Refuses requests whose `Content-Length` exceeds `[http] max_request_bytes` with 413.
struct BodyLimit(u64);

impl<E: poem::Endpoint> poem::Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.0,
        }
    }
}

/// The endpoint [`BodyLimit`] wraps.
struct BodyLimitEndpoint<E> {
    inner: E,
    max: u64,
}

impl<E: poem::Endpoint> poem::Endpoint for BodyLimitEndpoint<E> {
    type Output = poem::Response;

    async fn call(&self, req: poem::Request) -> poem::Result<Self::Output> {
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Ok(crate::api::error::render(poem::Error::from_string(
                format!("request body larger than {} bytes", self.max),
                poem::http::StatusCode::PAYLOAD_TOO_LARGE,
            )));
        }
        Ok(poem::IntoResponse::into_response(
            self.inner.call(req).await?,
        ))
    }
}

/// Mount the viewer at [`viewer::MOUNT`] when a viewer directory is configured.
fn with_viewer(route: Route, dir: &str) -> Route {
    if dir.is_empty() {
        return route;
    }
    if !std::path::Path::new(dir).join("index.html").is_file() {
        tracing::warn!(
            viewer_dir = dir,
            "viewer_dir has no index.html; /viewer will answer 404"
        );
    }
    route.nest(viewer::MOUNT, viewer::Viewer::new(dir))
}

/// A bound HTTP server.
pub struct HttpServer {
    acceptor: poem::listener::TcpAcceptor,
    state: AppState,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        Ok(Self { acceptor, state })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
    }

    /// Serve until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                routes(self.state),
                async move { shutdown.cancelled().await },
                Some(std::time::Duration::from_secs(5)),
            )
            .await
    }
}
