//! The one typed configuration tree.
//!
//! Sources, later ones winning: built-in defaults (the same values the checked-in
//! `config.toml` documents), the TOML file given with `--config` (default
//! `./config.toml`, optional), environment variables `GLIA__SECTION__KEY`
//! (e.g. `GLIA__DIMSE__PORT=11113`), then CLI flags (`--set section.key=value`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
}

/// The whole configuration of a node.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub dimse: DimseConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub dicomweb: DicomWebConfig,
    pub auth: AuthConfig,
    pub ai: crate::ai::AiConfig,
    pub log: LogConfig,
}

/// `[node]`: how this node runs as a whole.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub mode: NodeMode,
}

/// `dev` relaxes what a production site must set explicitly (a real JWT signing
/// key, the DIMSE peer allow-list); `production` refuses to start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    #[default]
    Dev,
    Production,
}

/// `[dimse]`: the DICOM upper-layer listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DimseConfig {
    /// Our AE title.
    pub ae_title: String,
    /// Address to bind.
    pub bind: IpAddr,
    /// TCP port (0 = ephemeral, useful in tests).
    pub port: u16,
    /// Concurrent associations; the excess is rejected (transient, local limit exceeded).
    pub max_associations: usize,
    /// Largest P-DATA PDU we accept (bytes); advertised in A-ASSOCIATE-AC.
    pub max_pdu_length: u32,
    /// Reject associations whose called AE title is not ours.
    pub check_called_ae: bool,
    /// Reject calling AE titles that are not listed in `[[dimse.peers]]`:
    /// `true`, `false` or `"auto"` (on in `[node] mode = "production"`, off in dev).
    pub require_known_peers: KnownPeers,
    /// Seconds to wait for the A-ASSOCIATE-RQ after a connection opens.
    pub association_timeout_secs: u64,
    /// Seconds a read may stall inside an association before it is aborted.
    pub read_timeout_secs: u64,
    /// Seconds a write may stall before the association is aborted.
    pub write_timeout_secs: u64,
    /// Largest object accepted by C-STORE (bytes); larger ones get 0xA700.
    pub max_object_bytes: u64,
    /// Transfer-syntax preference when an SCU proposes several in one context.
    /// `"*"` stands for "any other syntax the registry knows, in the SCU's order".
    pub transfer_syntax_preference: Vec<String>,
    /// Seconds in-flight associations get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Known remote application entities.
    pub peers: Vec<PeerConfig>,
    /// `[dimse.tls]`: DICOM TLS on a second port.
    pub tls: DimseTlsConfig,
}

/// `require_known_peers`: a boolean or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownPeers {
    /// Only listed peers may associate.
    On,
    /// Any calling AE may associate (listed peers keep their service limits).
    Off,
    /// On in production mode, off in dev mode.
    #[default]
    Auto,
}

impl KnownPeers {
    /// Is the allow-list enforced in this node mode?
    pub fn resolve(self, mode: NodeMode) -> bool {
        match self {
            KnownPeers::On => true,
            KnownPeers::Off => false,
            KnownPeers::Auto => mode == NodeMode::Production,
        }
    }
}

impl Serialize for KnownPeers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KnownPeers::On => s.serialize_bool(true),
            KnownPeers::Off => s.serialize_bool(false),
            KnownPeers::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for KnownPeers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(KnownPeers::On),
            Raw::Bool(false) => Ok(KnownPeers::Off),
            Raw::Text(t) if t.eq_ignore_ascii_case("auto") => Ok(KnownPeers::Auto),
            Raw::Text(t) if t == "true" => Ok(KnownPeers::On),
            Raw::Text(t) if t == "false" => Ok(KnownPeers::Off),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "require_known_peers must be true, false or \"auto\", got {t:?}"
            ))),
        }
    }
}

/// `[dimse.tls]`: a second DICOM listener speaking TLS (PS3.15 Annex B).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DimseTlsConfig {
    pub enabled: bool,
    /// TCP port of the TLS listener (same bind address as `[dimse]`; 0 = ephemeral).
    pub port: u16,
    /// PEM certificate chain of this node (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, client certificates are required and verified.
    pub client_ca_file: Option<PathBuf>,
}

impl Default for DimseTlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 2762,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: None,
        }
    }
}

/// `[[dimse.peers]]`: a remote application entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Services this peer may use: `echo`, `store`, `find`, `move`, `get`, `commit`.
    #[serde(default = "all_services")]
    pub services: Vec<String>,
    /// The diagnostic centre this AE belongs to; studies it stores get this centre.
    #[serde(default)]
    pub centre_id: Option<i64>,
    /// Require the TCP peer address to be (one of the addresses of) `host`.
    #[serde(default)]
    pub host_check: bool,
    /// SHA-256 (hex) of the DER client certificate this AE must present over DICOM TLS;
    /// when set, the AE may only associate over TLS with that certificate.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
}

impl Default for PeerConfig {
    /// An entry for `ae_title = ""` on localhost port 104 with every service.
    fn default() -> Self {
        Self {
            ae_title: String::new(),
            host: "127.0.0.1".into(),
            port: 104,
            services: all_services(),
            centre_id: None,
            host_check: false,
            tls_fingerprint: None,
        }
    }
}

fn all_services() -> Vec<String> {
    ["echo", "store", "find", "move", "get", "commit"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for DimseConfig {
    fn default() -> Self {
        Self {
            ae_title: "GLIA".into(),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 11112,
            max_associations: 64,
            max_pdu_length: 262_144,
            check_called_ae: true,
            require_known_peers: KnownPeers::Auto,
            association_timeout_secs: 30,
            read_timeout_secs: 60,
            write_timeout_secs: 60,
            max_object_bytes: 1 << 30,
            transfer_syntax_preference: vec![
                "1.2.840.10008.1.2.1".into(),
                "1.2.840.10008.1.2".into(),
                "*".into(),
            ],
            shutdown_grace_secs: 10,
            peers: Vec::new(),
            tls: DimseTlsConfig::default(),
        }
    }
}

/// `[http]`: the HTTP server (health, metrics; DICOMweb and the API later).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// Directory of a prebuilt web viewer (e.g. OHIF's `dist/`) served at `/viewer`;
    /// empty = no viewer.
    pub viewer_dir: String,
    /// Origins allowed to call the HTTP API and DICOMweb from a browser (CORS);
    /// `["*"]` allows any origin, empty allows none.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted on any route (bytes, by Content-Length); larger
    /// requests get 413.
    pub max_request_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            viewer_dir: String::new(),
            cors_origins: Vec::new(),
            max_request_bytes: 2 << 30,
        }
    }
}

/// The documented development JWT signing key: the default of `[auth] jwt_secret`,
/// refused by `glia serve` in `[node] mode = "production"`.
pub const DEV_JWT_SECRET: &str = "glia-development-jwt-secret-do-not-use-in-production";

/// `[auth]`: user authentication (passwords, tokens, two-factor, throttling).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 key signing access tokens (env `GLIA__AUTH__JWT_SECRET`).
    pub jwt_secret: String,
    /// Lifetime of an access token (seconds).
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (seconds).
    pub refresh_token_ttl_secs: u64,
    /// Wrong passwords in a row before the account is locked.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked (seconds).
    pub lockout_secs: u64,
    /// Requests per minute one client IP may make to `/api/auth/*` (0 = unlimited).
    pub login_rate_per_minute: u32,
    /// Lifetime of a link token (`?token=` for WADO-URI links and the viewer), seconds.
    pub link_token_ttl_secs: u64,
    /// Which studies radiologists see: `all`, or `assigned` (their `study_grant` rows).
    pub radiologist_scope: crate::auth::policy::RadiologistScope,
    /// How long (seconds) a verified user is cached between bearer requests; changes
    /// made on this node apply at once, changes made elsewhere within this time.
    /// 0 = look the user up on every request.
    pub principal_cache_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            max_failed_logins: 5,
            lockout_secs: 900,
            login_rate_per_minute: 20,
            link_token_ttl_secs: 3600,
            radiologist_scope: crate::auth::policy::RadiologistScope::All,
            principal_cache_secs: 5,
        }
    }
}

/// `[dicomweb]`: STOW-RS, QIDO-RS, WADO-RS and WADO-URI under `/dicom-web` and `/wado`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomWebConfig {
    /// Largest STOW-RS request body (bytes); larger requests get 413.
    pub max_upload_bytes: u64,
    /// QIDO-RS results per request when the client gives no `limit`.
    pub qido_default_limit: u64,
    /// Largest `limit` a QIDO-RS client may ask for; results beyond it are cut off
    /// with a `Warning: 299` header.
    pub qido_max_limit: u64,
    /// Binary values (OB, OW, OF, OD, OL, OV, UN) longer than this are returned in
    /// metadata as a BulkDataURI instead of inline base64 (PixelData always is).
    pub bulk_data_threshold: u64,
}

impl Default for DicomWebConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 << 30,
            qido_default_limit: 1000,
            qido_max_limit: 10_000,
            bulk_data_threshold: 1024,
        }
    }
}

/// `[database]`: the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created on first start, WAL) or `postgres://...`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/glia.db".into(),
            max_connections: 8,
        }
    }
}

/// `[storage]`: where DICOM objects live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `file://DIR` (relative paths allowed) or `s3://BUCKET[/PREFIX]`.
    pub url: String,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "file://data/blobs".into(),
            s3: S3Config::default(),
        }
    }
}

/// `[storage.s3]`: S3-compatible object storage. Credentials come from the usual
/// AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`; empty = AWS.
    pub endpoint: String,
    pub region: String,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            allow_http: false,
        }
    }
}

/// What to do when an instance arrives whose SOP Instance UID is already stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Store nothing, answer success.
    Keep,
    /// Replace the stored object and its index row.
    Replace,
}

/// `[ingest]`: the one ingest path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Local directory for objects being received (cleaned at start-up).
    pub spool_dir: PathBuf,
    pub duplicate_policy: DuplicatePolicy,
    /// Objects up to this size are held in memory while they arrive (no spool file);
    /// larger ones spill into `spool_dir`. 0 = always spool to disk.
    pub memory_spool_object_bytes: u64,
    /// All objects held in memory together stay under this; beyond it new data spills
    /// into `spool_dir`.
    pub memory_spool_total_bytes: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            spool_dir: PathBuf::from("data/spool"),
            duplicate_policy: DuplicatePolicy::Keep,
            memory_spool_object_bytes: 8 << 20,
            memory_spool_total_bytes: 256 << 20,
        }
    }
}

/// `[query]`: the query model, shared by C-FIND and QIDO-RS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Most matches one query may return; a query matching more is refused
    /// (C-FIND 0xA700 with an error comment) instead of flooding the SCU.
    pub max_matches: u64,
    /// Person names (PatientName, ReferringPhysicianName) match case-insensitively.
    pub person_name_case_insensitive: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_matches: 10_000,
            person_name_case_insensitive: true,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `glia=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Load defaults ← file (if it exists) ← `GLIA__*` env ← `overrides`
    /// (`section.key=value`, the value parsed as TOML, else taken as a string).
    pub fn load(file: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if file.exists() {
            fig = fig.merge(Toml::file(file));
        }
        fig = fig.merge(Env::prefixed("GLIA__").split("__"));
        for item in overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!("--set expects section.key=value, got {item:?}"))
            })?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            fig = fig.merge(Serialized::global(key.trim(), value));
        }
        let config: Config = fig.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ae = &self.dimse.ae_title;
        if ae.is_empty() || ae.len() > 16 || ae.trim() != ae {
            return Err(ConfigError::Invalid(format!(
                "dimse.ae_title must be 1-16 characters without leading/trailing spaces, got {ae:?}"
            )));
        }
        if !(4096..=(1 << 24)).contains(&self.dimse.max_pdu_length) {
            return Err(ConfigError::Invalid(
                "dimse.max_pdu_length must be between 4096 and 16777216".into(),
            ));
        }
        if self.dimse.max_associations == 0 {
            return Err(ConfigError::Invalid(
                "dimse.max_associations must be > 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_config_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let from_file: Config = Figment::new()
            .merge(Toml::file(&path))
            .extract()
            .expect("config.toml parses");
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&from_file).unwrap(),
            serde_json::to_value(&defaults).unwrap(),
            "config.toml must document every key with its default"
        );
    }

    #[test]
    fn overrides_win() {
        let cfg = Config::load(
            Path::new("/nonexistent.toml"),
            &["dimse.port=4242".into(), "dimse.ae_title=\"X\"".into()],
        )
        .unwrap();
        assert_eq!(cfg.dimse.port, 4242);
        assert_eq!(cfg.dimse.ae_title, "X");
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        // The only test touching these variables.
        std::env::set_var("GLIA__DIMSE__MAX_ASSOCIATIONS", "7");
        std::env::set_var("GLIA__HTTP__PORT", "9999");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let cfg = Config::load(&path, &["http.port=1234".into()]).unwrap();
        std::env::remove_var("GLIA__DIMSE__MAX_ASSOCIATIONS");
        std::env::remove_var("GLIA__HTTP__PORT");
        assert_eq!(cfg.dimse.max_associations, 7);
        assert_eq!(cfg.http.port, 1234);
    }

    #[test]
    fn bad_ae_title_is_refused() {
        let err = Config::load(
            Path::new("/nonexistent.toml"),
            &["dimse.ae_title=\"WAY_TOO_LONG_AE_TITLE\"".into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("ae_title"));
    }
}
