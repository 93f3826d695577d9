//! Typed, layered configuration: built-in defaults, then an optional TOML file,
//! then `COFFER_…` environment variables, then command-line flags; each layer
//! overrides the ones before it, key by key. Everything is checked here, once,
//! at start, so a bad value stops the process with a message naming the key
//! and the layer it came from, never halfway through serving.

mod layer;
mod render;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_store::Database;

pub use layer::{Env, Flags};
pub use render::render;

use crate::tls;
use layer::Layer;

/// One setting: its dotted name in the TOML file and its environment variable.
/// Variables are `COFFER_` + the key in capitals (`database.url` is
/// `COFFER_DATABASE_URL`), except where an older, shorter name already existed:
/// those names stay, so each key has exactly one variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
}

pub const LISTEN: Key = Key {
    name: "server.listen",
    env: "COFFER_LISTEN",
};
pub const TLS_CERT: Key = Key {
    name: "server.tls_cert",
    env: "COFFER_SERVER_TLS_CERT",
};
pub const TLS_KEY: Key = Key {
    name: "server.tls_key",
    env: "COFFER_SERVER_TLS_KEY",
};
pub const RATE_LIMIT: Key = Key {
    name: "server.rate_limit_per_second",
    env: "COFFER_SERVER_RATE_LIMIT_PER_SECOND",
};
pub const AUTH_RATE_LIMIT: Key = Key {
    name: "server.auth_rate_limit_per_second",
    env: "COFFER_SERVER_AUTH_RATE_LIMIT_PER_SECOND",
};
/// The bank's reverse proxies / load balancers whose `X-Forwarded-For` is
/// believed: comma-separated addresses or CIDR blocks.
pub const TRUSTED_PROXIES: Key = Key {
    name: "server.trusted_proxies",
    env: "COFFER_SERVER_TRUSTED_PROXIES",
};
pub const DATABASE_URL: Key = Key {
    name: "database.url",
    env: "COFFER_DATABASE_URL",
};
/// The secret form of `database.url`: the path of a file holding the URL.
pub const DATABASE_URL_FILE: Key = Key {
    name: "database.url_file",
    env: "COFFER_DATABASE_URL_FILE",
};
pub const DATA_DIR: Key = Key {
    name: "database.data_dir",
    env: "COFFER_DATA_DIR",
};
pub const READER_CONNECTIONS: Key = Key {
    name: "database.reader_connections",
    env: "COFFER_DATABASE_READER_CONNECTIONS",
};
pub const LOG_FORMAT: Key = Key {
    name: "log.format",
    env: "COFFER_LOG_FORMAT",
};
pub const LOG_FILTER: Key = Key {
    name: "log.filter",
    env: "COFFER_LOG",
};
pub const RETENTION_HOURS: Key = Key {
    name: "idempotency.retention_hours",
    env: "COFFER_IDEMPOTENCY_RETENTION_HOURS",
};
pub const PASSKEYS_RP_ID: Key = Key {
    name: "passkeys.rp_id",
    env: "COFFER_PASSKEYS_RP_ID",
};
pub const PASSKEYS_ORIGIN: Key = Key {
    name: "passkeys.origin",
    env: "COFFER_PASSKEYS_ORIGIN",
};
/// The file holding the master key (64 hex characters).
pub const MASTER_KEY_FILE: Key = Key {
    name: "vault.master_key_file",
    env: "COFFER_VAULT_MASTER_KEY_FILE",
};
/// During a master-key rotation: the file holding the master key being
/// replaced, still used to unwrap data keys until `coffer keys rewrap`.
pub const PREVIOUS_MASTER_KEY_FILE: Key = Key {
    name: "vault.previous_master_key_file",
    env: "COFFER_VAULT_PREVIOUS_MASTER_KEY_FILE",
};
/// The watch list loaded at start (JSON or CSV, by its extension); a list
/// that differs from the active one becomes the next version.
pub const WATCHLIST_FILE: Key = Key {
    name: "compliance.watchlist_file",
    env: "COFFER_COMPLIANCE_WATCHLIST_FILE",
};
/// Name similarity (basis points) at which a screening hit is queued.
pub const MATCH_THRESHOLD: Key = Key {
    name: "compliance.match_threshold_bps",
    env: "COFFER_COMPLIANCE_MATCH_THRESHOLD_BPS",
};
/// The large-value report threshold in CNY minor units (fen).
pub const LARGE_VALUE_CNY: Key = Key {
    name: "compliance.large_value_threshold_cny",
    env: "COFFER_COMPLIANCE_LARGE_VALUE_THRESHOLD_CNY",
};
/// The KYC tiers (0, 1, 2) whose top-ups count against the tier's daily
/// and monthly limits, comma-separated (a TOML list in the file).
pub const TOP_UPS_LIMITED_TIERS: Key = Key {
    name: "limits.top_ups_limited_tiers",
    env: "COFFER_LIMITS_TOP_UPS_LIMITED_TIERS",
};
/// The SMTP relay for e-mail notifications; unset, e-mail goes to the simulator.
pub const SMTP_HOST: Key = Key {
    name: "smtp.host",
    env: "COFFER_SMTP_HOST",
};
pub const SMTP_PORT: Key = Key {
    name: "smtp.port",
    env: "COFFER_SMTP_PORT",
};
/// `starttls` (default), `tls` (implicit, port 465) or `none` (local relay only).
pub const SMTP_TLS: Key = Key {
    name: "smtp.tls",
    env: "COFFER_SMTP_TLS",
};
pub const SMTP_USERNAME: Key = Key {
    name: "smtp.username",
    env: "COFFER_SMTP_USERNAME",
};
/// The file holding the relay's password (never the password itself).
pub const SMTP_PASSWORD_FILE: Key = Key {
    name: "smtp.password_file",
    env: "COFFER_SMTP_PASSWORD_FILE",
};
/// The sender, `Coffer <no-reply@bank.example>`.
pub const SMTP_FROM: Key = Key {
    name: "smtp.from",
    env: "COFFER_SMTP_FROM",
};
/// Every key, in the order `coffer config check` and the README list them.
pub const KEYS: [Key; 27] = [
    LISTEN,
    TLS_CERT,
    TLS_KEY,
    RATE_LIMIT,
    AUTH_RATE_LIMIT,
    TRUSTED_PROXIES,
    DATABASE_URL,
    DATABASE_URL_FILE,
    DATA_DIR,
    READER_CONNECTIONS,
    LOG_FORMAT,
    LOG_FILTER,
    RETENTION_HOURS,
    PASSKEYS_RP_ID,
    PASSKEYS_ORIGIN,
    MASTER_KEY_FILE,
    PREVIOUS_MASTER_KEY_FILE,
    WATCHLIST_FILE,
    MATCH_THRESHOLD,
    LARGE_VALUE_CNY,
    TOP_UPS_LIMITED_TIERS,
    SMTP_HOST,
    SMTP_PORT,
    SMTP_TLS,
    SMTP_USERNAME,
    SMTP_PASSWORD_FILE,
    SMTP_FROM,
];
pub const DEFAULT_SMTP_PORT: u16 = 587;
/// The older boolean spelling of `log.format = "json"`, kept working.
pub const LOG_JSON_ENV: &str = "COFFER_LOG_JSON";
/// The path of the TOML file, when `--config` is not given.
pub const CONFIG_ENV: &str = "COFFER_CONFIG";

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "coffer-data";
pub const DEFAULT_READER_CONNECTIONS: usize = 8;
/// Far above what one node's database serves well; a larger number is a typo.
pub const READER_CONNECTIONS_MAX: usize = 256;
/// Requests per second per client address; far above what one node serves.
pub const RATE_LIMIT_PER_SECOND_MAX: u32 = 1_000_000;
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Clients retry a failed payment for up to a day (mobile apps resume after a
/// night offline); a key forgotten sooner would let such a retry pay twice.
pub const RETENTION_HOURS_MIN: i64 = 24;
/// A year and a day: anything larger is almost surely minutes or seconds typed
/// as hours.
pub const RETENTION_HOURS_MAX: i64 = 24 * 366;

/// Where a value came from; named in error messages and by `config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
    /// Read from a file whose path came from `named_by`: how secrets arrive.
    SecretFile {
        path: PathBuf,
        named_by: Box<Origin>,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) | Origin::Flag(name) => write!(f, "{name}"),
            Origin::SecretFile { path, named_by } => {
                write!(f, "file {} named by {named_by}", path.display())
            }
        }
    }
}

/// A value and the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }

    fn default_value(value: T) -> Self {
        Sourced::new(value, Origin::Default)
    }
}

/// The checked configuration every command that opens the database starts from.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub idempotency: IdempotencyConfig,
    pub passkeys: PasskeysConfig,
    pub vault: VaultConfig,
    /// `[p2p]` and `[fees.…]`: the P2P policy and the fee schedule.
    pub payments: Sourced<coffer_payments::P2pPolicy>,
    pub compliance: ComplianceConfig,
    /// `[limits]`: how the KYC tiers' limits apply beyond their amounts.
    pub limits: LimitsConfig,
    /// `[smtp]`: the relay e-mail notifications go through; `None` keeps
    /// the simulator.
    pub smtp: Option<SmtpConfig>,
    /// Things worth an operator's look that do not stop the start
    /// (e.g. a `COFFER_…` variable that is no setting, probably a typo).
    pub warnings: Vec<String>,
}

/// The SMTP relay; the password is only ever in `settings.password`
/// (a `Secret`, redacted in `Debug` and never rendered).
#[derive(Debug)]
pub struct SmtpConfig {
    pub settings: coffer_notify::smtp::SmtpSettings,
    pub host: Origin,
    pub password: Option<Origin>,
}

#[derive(Debug)]
pub struct ServerConfig {
    pub listen: Sourced<SocketAddr>,
    pub tls: Option<TlsConfig>,
    /// Requests per second per client address (burst: twice that); 0 is off.
    pub rate_limit_per_second: Sourced<u32>,
    /// The same for the unauthenticated `/v1/auth` routes.
    pub auth_rate_limit_per_second: Sourced<u32>,
    /// Proxies whose `X-Forwarded-For` is believed (default: none).
    pub trusted_proxies: Sourced<coffer_api::client_addr::TrustedProxies>,
}

impl ServerConfig {
    /// The API's rate limits by this configuration.
    pub fn rate_limits(&self) -> coffer_api::RateLimits {
        coffer_api::RateLimits {
            auth: coffer_api::Rate::per_second(self.auth_rate_limit_per_second.value),
            general: coffer_api::Rate::per_second(self.rate_limit_per_second.value),
            ..coffer_api::RateLimits::default()
        }
    }
}

pub struct TlsConfig {
    pub cert: Sourced<PathBuf>,
    pub key: Sourced<PathBuf>,
    /// Loaded at start, so a bad certificate stops the start rather than the
    /// first client's handshake.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

pub struct DatabaseConfig {
    /// May hold a password: show it only through `Database::redacted`.
    pub url: Sourced<Database>,
    pub data_dir: Sourced<PathBuf>,
    pub reader_connections: Sourced<usize>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.value.redacted())
            .field("url_origin", &self.url.origin)
            .field("data_dir", &self.data_dir)
            .field("reader_connections", &self.reader_connections)
            .finish()
    }
}

#[derive(Debug)]
pub struct LogConfig {
    pub format: Sourced<LogFormat>,
    /// A `tracing` filter (`info`, `coffer_api=debug,warn`), checked at load.
    pub filter: Sourced<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug)]
pub struct IdempotencyConfig {
    pub retention_hours: Sourced<i64>,
}

/// Where passkeys (WebAuthn) are valid: the relying party id, a domain, and
/// the origin the web app is served from (that domain or a subdomain of it).
#[derive(Debug)]
pub struct PasskeysConfig {
    pub rp_id: Sourced<String>,
    pub origin: Sourced<String>,
}

impl PasskeysConfig {
    /// The identity service's passkey settings by this configuration.
    pub fn settings(&self) -> coffer_identity::PasskeySettings {
        coffer_identity::PasskeySettings {
            rp_id: self.rp_id.value.clone(),
            origin: self.origin.value.clone(),
        }
    }
}

/// Where the master key comes from. The key itself is read when a command
/// opens the vault, never kept in the configuration.
#[derive(Debug)]
pub struct VaultConfig {
    /// Default: `<data_dir>/master.key`, created (mode 0600) if missing.
    pub master_key_file: Sourced<PathBuf>,
    pub previous_master_key_file: Option<Sourced<PathBuf>>,
}

impl VaultConfig {
    /// The master key, with the previous one beside it while a master-key
    /// rotation is under way. Only the default location is created when
    /// missing: a configured file that is not there is an error, because a
    /// fresh key would not open the data encrypted under the real one.
    pub fn key_provider(&self) -> anyhow::Result<Arc<dyn coffer_vault::KeyProvider>> {
        use anyhow::Context as _;
        let path = &self.master_key_file.value;
        let current = if self.master_key_file.origin == Origin::Default {
            coffer_vault::LocalMasterKey::load_or_create(path)
        } else {
            coffer_vault::LocalMasterKey::from_file(path)
        }
        .with_context(|| {
            format!(
                "{} = {} (from {})",
                MASTER_KEY_FILE.name,
                path.display(),
                self.master_key_file.origin
            )
        })?;
        let Some(previous) = &self.previous_master_key_file else {
            return Ok(Arc::new(current));
        };
        let old = coffer_vault::LocalMasterKey::from_file(&previous.value).with_context(|| {
            format!(
                "{} = {} (from {})",
                PREVIOUS_MASTER_KEY_FILE.name,
                previous.value.display(),
                previous.origin
            )
        })?;
        let ring = coffer_vault::MasterKeyRing::new(Arc::new(current), vec![Arc::new(old)])
            .with_context(|| PREVIOUS_MASTER_KEY_FILE.name.to_string())?;
        Ok(Arc::new(ring))
    }
}

/// How the KYC tiers' limits apply (their amounts are runtime settings).
#[derive(Debug)]
pub struct LimitsConfig {
    /// Per tier: whether top-ups count against its daily and monthly
    /// limits (`FundingPolicy::top_ups_limited`).
    pub top_ups_limited: Sourced<[bool; 3]>,
}

/// Watch-list screening and regulatory reports.
#[derive(Debug)]
pub struct ComplianceConfig {
    pub watchlist_file: Option<Sourced<PathBuf>>,
    pub match_threshold_bps: Sourced<u32>,
    pub large_value_threshold_cny: Sourced<i64>,
}

impl ComplianceConfig {
    /// The report rules' settings by this configuration.
    pub fn report_settings(&self) -> coffer_compliance::ReportSettings {
        let mut settings = coffer_compliance::ReportSettings::default();
        settings
            .large_value_thresholds
            .insert("CNY".to_string(), self.large_value_threshold_cny.value);
        settings
    }

    /// Sets the threshold and loads the configured list (a new version only
    /// when it differs from the active one).
    pub fn apply(&self, screener: &coffer_compliance::Screener) -> anyhow::Result<()> {
        use anyhow::Context as _;
        screener
            .set_threshold_bps(self.match_threshold_bps.value)
            .map_err(|e| anyhow::anyhow!("{}: {e}", MATCH_THRESHOLD.name))?;
        let Some(file) = &self.watchlist_file else {
            return Ok(());
        };
        let path = &file.value;
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{} = {} (from {})",
                WATCHLIST_FILE.name,
                path.display(),
                file.origin
            )
        })?;
        let format = coffer_compliance::watchlist::ListFormat::of_path(path)
            .context("the watch list file must end in .json or .csv")?;
        let version = screener
            .load_list(
                coffer_audit::ACTOR_SYSTEM,
                &path.display().to_string(),
                format,
                &text,
                "",
            )
            .map_err(|e| anyhow::anyhow!("{} = {}: {e}", WATCHLIST_FILE.name, path.display()))?;
        tracing::info!(
            version = version.version,
            entries = version.entry_count,
            "watch list active"
        );
        Ok(())
    }
}

/// Why the configuration cannot be used; each message names the key and,
/// where there is one, the layer the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key} = {value} (from {origin}): {reason}")]
    Invalid {
        key: &'static str,
        /// Quoted as given, or redacted where it may hold a secret.
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("{key} is set (from {origin}) but {missing} is not: set both or neither")]
    Incomplete {
        key: &'static str,
        origin: Origin,
        missing: &'static str,
    },
    #[error("{first} and {second} are both set in {place}: set only one")]
    Conflict {
        first: &'static str,
        second: &'static str,
        place: String,
    },
    #[error("config file {} (from {origin}): {error}", path.display())]
    FileUnreadable {
        path: PathBuf,
        origin: Origin,
        error: std::io::Error,
    },
    /// A TOML syntax error, unknown key or wrongly typed value; `location` is
    /// the file, line and dotted key.
    #[error("{location}: {message}")]
    File { location: String, message: String },
}

/// Loads every layer and checks the result.
pub fn load(flags: &Flags, env: &Env) -> Result<Config, ConfigError> {
    let mut merged = Layer::default();
    if let Some(file) = layer::config_file(flags, env)? {
        merged = layer::from_file(&file)?;
    }
    merged = layer::from_env(env)?.over(merged);
    merged = layer::from_flags(flags).over(merged);
    let mut config = validate(merged)?;
    config.warnings.extend(
        env.unknown_names()
            .map(|name| format!("{name} is not a Coffer setting; ignored (a typo?)")),
    );
    Ok(config)
}

fn validate(layer: Layer) -> Result<Config, ConfigError> {
    let listen = parse_listen(layer.listen)?;
    let tls = match (layer.tls_cert, layer.tls_key) {
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ConfigError::Incomplete {
                key: TLS_CERT.name,
                origin: cert.origin,
                missing: TLS_KEY.name,
            })
        }
        (None, Some(key)) => {
            return Err(ConfigError::Incomplete {
                key: TLS_KEY.name,
                origin: key.origin,
                missing: TLS_CERT.name,
            })
        }
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
    };
    let rate_limit_per_second = parse_bounded(
        RATE_LIMIT,
        layer.rate_limit_per_second,
        coffer_api::rate_limit::GENERAL_PER_SECOND_DEFAULT,
        0,
        RATE_LIMIT_PER_SECOND_MAX,
    )?;
    let auth_rate_limit_per_second = parse_bounded(
        AUTH_RATE_LIMIT,
        layer.auth_rate_limit_per_second,
        coffer_api::rate_limit::AUTH_PER_SECOND_DEFAULT,
        0,
        RATE_LIMIT_PER_SECOND_MAX,
    )?;
    let data_dir = match layer.data_dir {
        Some(raw) if raw.value.is_empty() => return Err(invalid(DATA_DIR, &raw, "empty")),
        Some(raw) => Sourced::new(PathBuf::from(raw.value), raw.origin),
        None => Sourced::default_value(PathBuf::from(DEFAULT_DATA_DIR)),
    };
    let url = match layer.database_url {
        Some(raw) => parse_database_url(raw)?,
        None => Sourced::default_value(Database::Sqlite(data_dir.value.join("coffer.db"))),
    };
    let reader_connections = parse_bounded(
        READER_CONNECTIONS,
        layer.reader_connections,
        DEFAULT_READER_CONNECTIONS,
        1,
        READER_CONNECTIONS_MAX,
    )?;
    let format = match layer.log_format {
        None => Sourced::default_value(LogFormat::Text),
        Some(raw) => match raw.value.as_str() {
            "text" => Sourced::new(LogFormat::Text, raw.origin),
            "json" => Sourced::new(LogFormat::Json, raw.origin),
            _ => return Err(invalid(LOG_FORMAT, &raw, "expected \"text\" or \"json\"")),
        },
    };
    let filter = match layer.log_filter {
        None => Sourced::default_value(DEFAULT_LOG_FILTER.to_string()),
        Some(raw) => match tracing_subscriber::EnvFilter::try_new(&raw.value) {
            Ok(_) => raw,
            Err(error) => {
                let reason =
                    format!("not a log filter like \"info\" or \"coffer_api=debug,warn\": {error}");
                return Err(invalid(LOG_FILTER, &raw, reason));
            }
        },
    };
    let retention_hours = parse_bounded(
        RETENTION_HOURS,
        layer.retention_hours,
        coffer_api::idempotency::IDEMPOTENCY_RETENTION_HOURS,
        RETENTION_HOURS_MIN,
        RETENTION_HOURS_MAX,
    )?;
    let trusted_proxies = match layer.trusted_proxies {
        None => Sourced::default_value(coffer_api::client_addr::TrustedProxies::default()),
        Some(raw) => {
            let blocks = raw
                .value
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(coffer_api::client_addr::Cidr::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| invalid(TRUSTED_PROXIES, &raw, reason))?;
            Sourced::new(coffer_api::client_addr::TrustedProxies(blocks), raw.origin)
        }
    };
    let passkeys = parse_passkeys(layer.passkeys_rp_id, layer.passkeys_origin)?;
    let vault = parse_vault(
        &data_dir,
        layer.master_key_file,
        layer.previous_master_key_file,
    )?;
    let payments = parse_payments(layer.payments)?;
    let compliance = ComplianceConfig {
        watchlist_file: match layer.watchlist_file {
            None => None,
            Some(raw) => {
                match coffer_compliance::watchlist::ListFormat::of_path(Path::new(&raw.value)) {
                    _ if !Path::new(&raw.value).is_file() => {
                        return Err(invalid(WATCHLIST_FILE, &raw, "no such file"))
                    }
                    None => {
                        return Err(invalid(
                            WATCHLIST_FILE,
                            &raw,
                            "expected a .json or .csv file",
                        ))
                    }
                    Some(_) => Some(Sourced::new(PathBuf::from(raw.value), raw.origin)),
                }
            }
        },
        match_threshold_bps: parse_bounded(
            MATCH_THRESHOLD,
            layer.match_threshold_bps,
            coffer_compliance::DEFAULT_THRESHOLD_BPS,
            coffer_compliance::THRESHOLD_MIN_BPS,
            10_000,
        )?,
        large_value_threshold_cny: parse_bounded(
            LARGE_VALUE_CNY,
            layer.large_value_threshold_cny,
            5_000_000,
            1,
            i64::MAX / 4,
        )?,
    };
    let limits = LimitsConfig {
        top_ups_limited: parse_tiers(TOP_UPS_LIMITED_TIERS, layer.top_ups_limited_tiers)?,
    };
    let smtp = parse_smtp(
        layer.smtp_host,
        layer.smtp_port,
        layer.smtp_tls,
        layer.smtp_username,
        layer.smtp_password,
        layer.smtp_from,
    )?;
    Ok(Config {
        server: ServerConfig {
            listen,
            tls,
            rate_limit_per_second,
            auth_rate_limit_per_second,
            trusted_proxies,
        },
        database: DatabaseConfig {
            url,
            data_dir,
            reader_connections,
        },
        log: LogConfig { format, filter },
        idempotency: IdempotencyConfig { retention_hours },
        passkeys,
        vault,
        payments,
        compliance,
        limits,
        smtp,
        warnings: Vec::new(),
    })
}

fn parse_smtp(
    host: Option<Sourced<String>>,
    port: Option<Sourced<String>>,
    tls: Option<Sourced<String>>,
    username: Option<Sourced<String>>,
    password: Option<Sourced<String>>,
    from: Option<Sourced<String>>,
) -> Result<Option<SmtpConfig>, ConfigError> {
    let Some(host) = host else {
        // Without a host the rest would be ignored: say so rather than
        // leave an operator believing mail goes out.
        if let Some(other) = port.or(tls).or(username).or(from) {
            return Err(ConfigError::Incomplete {
                key: "smtp.*",
                origin: other.origin,
                missing: SMTP_HOST.name,
            });
        }
        return Ok(None);
    };
    if !is_domain_name(&host.value) && host.value.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(SMTP_HOST, &host, "a host name or IP address"));
    }
    let port = match port {
        None => DEFAULT_SMTP_PORT,
        Some(raw) => raw
            .value
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(SMTP_PORT, &raw, "a port from 1 to 65535"))?,
    };
    let tls = match tls {
        None => coffer_notify::smtp::SmtpTls::StartTls,
        Some(raw) => coffer_notify::smtp::SmtpTls::parse(&raw.value)
            .ok_or_else(|| invalid(SMTP_TLS, &raw, "starttls, tls or none"))?,
    };
    let Some(from) = from else {
        return Err(ConfigError::Incomplete {
            key: SMTP_HOST.name,
            origin: host.origin,
            missing: SMTP_FROM.name,
        });
    };
    if !coffer_notify::smtp::valid_mailbox(&from.value) {
        return Err(invalid(
            SMTP_FROM,
            &from,
            "an address like \"Coffer <no-reply@bank.example>\"",
        ));
    }
    if username.is_some() != password.is_some() {
        let (set, origin, missing) = match (&username, &password) {
            (Some(u), None) => (
                SMTP_USERNAME.name,
                u.origin.clone(),
                SMTP_PASSWORD_FILE.name,
            ),
            (None, Some(p)) => (
                SMTP_PASSWORD_FILE.name,
                p.origin.clone(),
                SMTP_USERNAME.name,
            ),
            _ => unreachable!("one of the two is set"),
        };
        return Err(ConfigError::Incomplete {
            key: set,
            origin,
            missing,
        });
    }
    let password_origin = password.as_ref().map(|p| p.origin.clone());
    Ok(Some(SmtpConfig {
        settings: coffer_notify::smtp::SmtpSettings {
            host: host.value.clone(),
            port,
            tls,
            username: username.map(|u| u.value),
            password: password.map(|p| coffer_core::Secret::new(p.value)),
            from: from.value,
            timeout: std::time::Duration::from_secs(30),
        },
        host: host.origin,
        password: password_origin,
    }))
}

/// The P2P policy and fee schedule: the built-in ones with what the file
/// names replaced, each fee rule and the policy's relations checked; an
/// error names the file and the dotted key.
fn parse_payments(
    raw: Option<Sourced<layer::FilePayments>>,
) -> Result<Sourced<coffer_payments::P2pPolicy>, ConfigError> {
    use coffer_payments::{DiscountRule, DiscountScope, FeeOperation, FeeRule};
    let Some(raw) = raw else {
        return Ok(Sourced::default_value(coffer_payments::P2pPolicy::default()));
    };
    let place = raw.origin.to_string();
    let error = |key: String, message: String| ConfigError::File {
        location: format!("{place}: {key}"),
        message,
    };
    let mut policy = coffer_payments::P2pPolicy::default();
    let p2p = &raw.value.p2p;
    let set = |target: &mut i64, value: Option<i64>| {
        if let Some(value) = value {
            *target = value;
        }
    };
    set(&mut policy.quote_ttl_seconds, p2p.quote_ttl_seconds);
    set(&mut policy.step_up_threshold, p2p.step_up_threshold);
    set(&mut policy.exempt_payment_max, p2p.exempt_payment_max);
    set(
        &mut policy.exempt_daily_total_max,
        p2p.exempt_daily_total_max,
    );
    set(
        &mut policy.exempt_daily_count_max,
        p2p.exempt_daily_count_max,
    );
    set(&mut policy.lookups_per_hour_max, p2p.lookups_per_hour_max);
    set(
        &mut policy.lookups_per_ip_per_hour_max,
        p2p.lookups_per_ip_per_hour_max,
    );
    set(&mut policy.request_ttl_seconds, p2p.request_ttl_seconds);
    policy
        .validate()
        .map_err(|(field, message)| error(format!("p2p.{field}"), message))?;
    let fees = &raw.value.fees;
    let mut schedule = policy.fees.clone();
    for (operation, given) in [
        (FeeOperation::P2p, &fees.p2p),
        (FeeOperation::Withdrawal, &fees.withdrawal),
        (FeeOperation::MerchantPayment, &fees.merchant_payment),
        (FeeOperation::BillPayment, &fees.bill_payment),
    ] {
        let Some(given) = given else { continue };
        let base = schedule.rule(operation);
        let rule = FeeRule {
            fixed: given.fixed.unwrap_or(base.fixed),
            percent_bps: given.percent_bps.unwrap_or(base.percent_bps),
            minimum: given.minimum.unwrap_or(base.minimum),
            maximum: given.maximum.or(base.maximum),
            free_per_month: given.free_per_month.unwrap_or(base.free_per_month),
            first_free: given.first_free.unwrap_or(base.first_free),
        };
        schedule = schedule.with(operation, rule).map_err(|e| {
            error(
                format!("fees.{}.{}", operation.as_str(), e.field),
                e.message,
            )
        })?;
    }
    let discounts = &fees.merchant_discount;
    for (scope, key, given) in discounts
        .mcc
        .iter()
        .map(|(code, rule)| {
            (
                DiscountScope::Mcc(code.clone()),
                format!("mcc.{code}"),
                rule,
            )
        })
        .chain(discounts.merchant.iter().map(|(id, rule)| {
            (
                DiscountScope::Merchant(id.clone()),
                format!("merchant.{id}"),
                rule,
            )
        }))
    {
        let dotted = format!("fees.merchant_discount.{key}");
        let base = match &scope {
            DiscountScope::Mcc(code) => match coffer_payments::mcc::category(code) {
                Some(category) => DiscountRule::percent(i64::from(category.discount_rate_bps)),
                None => return Err(error(
                    dotted,
                    "not a merchant category code Coffer accepts (see GET /v1/merchant-categories)"
                        .into(),
                )),
            },
            DiscountScope::Merchant(_) => match given.percent_bps {
                Some(_) => DiscountRule::percent(0),
                None => return Err(error(format!("{dotted}.percent_bps"), "required".into())),
            },
        };
        let rule = DiscountRule {
            percent_bps: given.percent_bps.unwrap_or(base.percent_bps),
            minimum: given.minimum.unwrap_or(base.minimum),
            maximum: given.maximum.or(base.maximum),
        };
        schedule = schedule
            .with_discount(scope, rule)
            .map_err(|e| error(format!("{dotted}.{}", e.field), e.message))?;
    }
    policy.fees = schedule;
    Ok(Sourced::new(policy, raw.origin))
}

fn parse_vault(
    data_dir: &Sourced<PathBuf>,
    master: Option<Sourced<String>>,
    previous: Option<Sourced<String>>,
) -> Result<VaultConfig, ConfigError> {
    let master_key_file = match master {
        Some(raw) if raw.value.is_empty() => return Err(invalid(MASTER_KEY_FILE, &raw, "empty")),
        Some(raw) if !Path::new(&raw.value).is_file() => {
            return Err(invalid(
                MASTER_KEY_FILE,
                &raw,
                "no such file (make a new key with `coffer keys new-master-key --out PATH`)",
            ))
        }
        Some(raw) => Sourced::new(PathBuf::from(raw.value), raw.origin),
        None => Sourced::default_value(data_dir.value.join("master.key")),
    };
    let previous_master_key_file = match previous {
        None => None,
        Some(raw) if !Path::new(&raw.value).is_file() => {
            return Err(invalid(PREVIOUS_MASTER_KEY_FILE, &raw, "no such file"))
        }
        Some(raw) if Path::new(&raw.value) == master_key_file.value => {
            return Err(invalid(
                PREVIOUS_MASTER_KEY_FILE,
                &raw,
                format!("is the same file as {}", MASTER_KEY_FILE.name),
            ))
        }
        Some(raw) => Some(Sourced::new(PathBuf::from(raw.value), raw.origin)),
    };
    Ok(VaultConfig {
        master_key_file,
        previous_master_key_file,
    })
}

fn invalid(key: Key, raw: &Sourced<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.name,
        value: format!("{:?}", raw.value),
        origin: raw.origin.clone(),
        reason: reason.into(),
    }
}

fn parse_listen(raw: Option<Sourced<String>>) -> Result<Sourced<SocketAddr>, ConfigError> {
    let Some(raw) = raw else {
        // A constant known to parse; the fallback only keeps this panic-free.
        let address = DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        return Ok(Sourced::default_value(address));
    };
    match raw.value.parse() {
        Ok(address) => Ok(Sourced::new(address, raw.origin)),
        Err(_) => Err(invalid(
            LISTEN,
            &raw,
            "not a socket address like 127.0.0.1:8080 or [::]:8443",
        )),
    }
}

fn parse_database_url(raw: Sourced<String>) -> Result<Sourced<Database>, ConfigError> {
    match Database::parse(&raw.value) {
        Ok(database) => Ok(Sourced::new(database, raw.origin)),
        // The URL may hold a password and did not parse, so `redacted()` is
        // not available: show the scheme only.
        Err(_) => Err(ConfigError::Invalid {
            key: DATABASE_URL.name,
            value: match raw.value.split_once("://") {
                Some((scheme, _)) => format!("\"{scheme}://…\""),
                None => "(not shown)".to_string(),
            },
            origin: raw.origin,
            reason: "not a database URL: expected sqlite://PATH or postgres://USER@HOST/DB"
                .to_string(),
        }),
    }
}

/// A set of KYC tiers, `0,2` (or empty for none), as a flag per tier.
fn parse_tiers(key: Key, raw: Option<Sourced<String>>) -> Result<Sourced<[bool; 3]>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Sourced::default_value([false; 3]));
    };
    let mut tiers = [false; 3];
    for part in raw
        .value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.parse::<usize>().ok().and_then(|t| tiers.get_mut(t)) {
            Some(slot) => *slot = true,
            None => {
                return Err(invalid(
                    key,
                    &raw,
                    "expected KYC tiers from 0 to 2, comma-separated (e.g. 0,1), or nothing",
                ))
            }
        }
    }
    Ok(Sourced::new(tiers, raw.origin))
}

fn parse_bounded<T>(
    key: Key,
    raw: Option<Sourced<String>>,
    default: T,
    min: T,
    max: T,
) -> Result<Sourced<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = raw else {
        return Ok(Sourced::default_value(default));
    };
    match raw.value.parse::<T>() {
        Ok(value) if min <= value && value <= max => Ok(Sourced::new(value, raw.origin)),
        _ => Err(invalid(
            key,
            &raw,
            format!("expected a whole number from {min} to {max}"),
        )),
    }
}

/// A bare domain name: dot-separated labels of lowercase letters, digits and
/// hyphens (not at either end of a label), at most 253 characters.
fn is_domain_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn parse_passkeys(
    rp_id: Option<Sourced<String>>,
    origin: Option<Sourced<String>>,
) -> Result<PasskeysConfig, ConfigError> {
    let defaults = coffer_identity::PasskeySettings::default();
    let rp_id = rp_id.unwrap_or_else(|| Sourced::default_value(defaults.rp_id));
    if !is_domain_name(&rp_id.value) {
        return Err(invalid(
            PASSKEYS_RP_ID,
            &rp_id,
            "expected a bare domain name like example.com (lowercase letters, digits, dots and hyphens; no scheme or port)",
        ));
    }
    let origin = origin.unwrap_or_else(|| Sourced::default_value(defaults.origin));
    let (https, rest) = if let Some(rest) = origin.value.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = origin.value.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid(
            PASSKEYS_ORIGIN,
            &origin,
            "expected an http:// or https:// URL like https://wallet.example.com",
        ));
    };
    if rest.contains(['/', '?', '#']) {
        return Err(invalid(
            PASSKEYS_ORIGIN,
            &origin,
            "expected no path, query or fragment: only scheme, host and optional port",
        ));
    }
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port_ok = port.is_none_or(|port| {
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if !is_domain_name(host) || !port_ok {
        return Err(invalid(
            PASSKEYS_ORIGIN,
            &origin,
            "expected a lowercase domain name and optional port after the scheme, like https://wallet.example.com:8443",
        ));
    }
    let rp = rp_id.value.as_str();
    let within = host == rp
        || host
            .strip_suffix(rp)
            .is_some_and(|prefix| prefix.ends_with('.'));
    if !within {
        return Err(invalid(
            PASSKEYS_ORIGIN,
            &origin,
            format!(
                "host {host:?} is not {} ({rp:?}, from {}) or a subdomain of it",
                PASSKEYS_RP_ID.name, rp_id.origin
            ),
        ));
    }
    if !https && host != "localhost" {
        return Err(invalid(
            PASSKEYS_ORIGIN,
            &origin,
            "https:// is required unless the host is localhost",
        ));
    }
    Ok(PasskeysConfig { rp_id, origin })
}

fn load_tls(cert: Sourced<String>, key: Sourced<String>) -> Result<TlsConfig, ConfigError> {
    for (name, raw) in [(TLS_CERT, &cert), (TLS_KEY, &key)] {
        if !Path::new(&raw.value).is_file() {
            return Err(invalid(name, raw, "no such file"));
        }
    }
    match tls::server_config(Path::new(&cert.value), Path::new(&key.value)) {
        Ok(server_config) => Ok(TlsConfig {
            server_config: Arc::new(server_config),
            cert: Sourced::new(PathBuf::from(cert.value), cert.origin),
            key: Sourced::new(PathBuf::from(key.value), key.origin),
        }),
        Err(tls::TlsError::KeyMismatch) => Err(invalid(
            TLS_KEY,
            &key,
            format!("does not match the certificate in {}", TLS_CERT.name),
        )),
        Err(error) if error.is_about_key() => Err(invalid(TLS_KEY, &key, error.to_string())),
        Err(error) => Err(invalid(TLS_CERT, &cert, error.to_string())),
    }
}

#[cfg(test)]
mod tests;
