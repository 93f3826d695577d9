//! The layers as read: the TOML file, the environment and the flags, each a
//! set of raw values tagged with their origin. Secrets named by `*_file` keys
//! are read here, so later checks see the value and where it really came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    ConfigError, Key, Origin, Sourced, AUTH_RATE_LIMIT, CONFIG_ENV, DATABASE_URL,
    DATABASE_URL_FILE, DATA_DIR, KEYS, LARGE_VALUE_CNY, LISTEN, LOG_FILTER, LOG_FORMAT,
    LOG_JSON_ENV, MASTER_KEY_FILE, MATCH_THRESHOLD, PASSKEYS_ORIGIN, PASSKEYS_RP_ID,
    PREVIOUS_MASTER_KEY_FILE, RATE_LIMIT, READER_CONNECTIONS, RETENTION_HOURS, SMTP_FROM,
    SMTP_HOST, SMTP_PASSWORD_FILE, SMTP_PORT, SMTP_TLS, SMTP_USERNAME, TLS_CERT, TLS_KEY,
    TOP_UPS_LIMITED_TIERS, TRUSTED_PROXIES, WATCHLIST_FILE,
};

/// What one layer sets, unchecked; `None` keeps the value from the layers
/// below. Values stay text until `validate`, which parses every layer's alike.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub listen: Option<Sourced<String>>,
    pub tls_cert: Option<Sourced<String>>,
    pub tls_key: Option<Sourced<String>>,
    pub rate_limit_per_second: Option<Sourced<String>>,
    pub auth_rate_limit_per_second: Option<Sourced<String>>,
    pub trusted_proxies: Option<Sourced<String>>,
    /// Already read from the secret file when given as `url_file`.
    pub database_url: Option<Sourced<String>>,
    pub data_dir: Option<Sourced<String>>,
    pub reader_connections: Option<Sourced<String>>,
    pub log_format: Option<Sourced<String>>,
    pub log_filter: Option<Sourced<String>>,
    pub retention_hours: Option<Sourced<String>>,
    pub passkeys_rp_id: Option<Sourced<String>>,
    pub passkeys_origin: Option<Sourced<String>>,
    pub master_key_file: Option<Sourced<String>>,
    pub previous_master_key_file: Option<Sourced<String>>,
    /// `[p2p]` and `[fees.…]`: tables that only the file sets.
    pub payments: Option<Sourced<FilePayments>>,
    pub watchlist_file: Option<Sourced<String>>,
    pub match_threshold_bps: Option<Sourced<String>>,
    pub large_value_threshold_cny: Option<Sourced<String>>,
    pub top_ups_limited_tiers: Option<Sourced<String>>,
    pub smtp_host: Option<Sourced<String>>,
    pub smtp_port: Option<Sourced<String>>,
    pub smtp_tls: Option<Sourced<String>>,
    pub smtp_username: Option<Sourced<String>>,
    /// Already read from `smtp.password_file`.
    pub smtp_password: Option<Sourced<String>>,
    pub smtp_from: Option<Sourced<String>>,
}

impl Layer {
    /// This layer's values, and `lower`'s where this one sets none.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            rate_limit_per_second: self.rate_limit_per_second.or(lower.rate_limit_per_second),
            auth_rate_limit_per_second: self
                .auth_rate_limit_per_second
                .or(lower.auth_rate_limit_per_second),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            database_url: self.database_url.or(lower.database_url),
            data_dir: self.data_dir.or(lower.data_dir),
            reader_connections: self.reader_connections.or(lower.reader_connections),
            log_format: self.log_format.or(lower.log_format),
            log_filter: self.log_filter.or(lower.log_filter),
            retention_hours: self.retention_hours.or(lower.retention_hours),
            passkeys_rp_id: self.passkeys_rp_id.or(lower.passkeys_rp_id),
            passkeys_origin: self.passkeys_origin.or(lower.passkeys_origin),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            previous_master_key_file: self
                .previous_master_key_file
                .or(lower.previous_master_key_file),
            payments: self.payments.or(lower.payments),
            watchlist_file: self.watchlist_file.or(lower.watchlist_file),
            match_threshold_bps: self.match_threshold_bps.or(lower.match_threshold_bps),
            large_value_threshold_cny: self
                .large_value_threshold_cny
                .or(lower.large_value_threshold_cny),
            top_ups_limited_tiers: self.top_ups_limited_tiers.or(lower.top_ups_limited_tiers),
            smtp_host: self.smtp_host.or(lower.smtp_host),
            smtp_port: self.smtp_port.or(lower.smtp_port),
            smtp_tls: self.smtp_tls.or(lower.smtp_tls),
            smtp_username: self.smtp_username.or(lower.smtp_username),
            smtp_password: self.smtp_password.or(lower.smtp_password),
            smtp_from: self.smtp_from.or(lower.smtp_from),
        }
    }
}

/// The command-line layer: the flags a command offers (others stay `None`).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<String>,
    pub log_json: bool,
}

pub(super) fn from_flags(flags: &Flags) -> Layer {
    let flag = |value: &Option<String>, name| {
        value
            .clone()
            .map(|value| Sourced::new(value, Origin::Flag(name)))
    };
    Layer {
        listen: flag(&flags.listen, "--listen"),
        database_url: flag(&flags.database_url, "--db"),
        data_dir: flag(&flags.data_dir, "--data-dir"),
        log_format: flags
            .log_json
            .then(|| Sourced::new("json".to_string(), Origin::Flag("--log-json"))),
        ..Layer::default()
    }
}

/// The `COFFER_…` environment variables, read once at start.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: BTreeMap<String, OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
                .filter(|(name, _)| name.starts_with("COFFER_"))
                .collect(),
        }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env {
            vars: pairs
                .iter()
                .map(|(name, value)| (name.to_string(), OsString::from(value)))
                .collect(),
        }
    }

    /// The variable's value; empty counts as unset, as it did with clap.
    fn get(&self, key: Key, name: &'static str) -> Result<Option<Sourced<String>>, ConfigError> {
        let Some(value) = self.vars.get(name).filter(|value| !value.is_empty()) else {
            return Ok(None);
        };
        match value.clone().into_string() {
            Ok(value) => Ok(Some(Sourced::new(value, Origin::Env(name)))),
            Err(value) => Err(ConfigError::Invalid {
                key: key.name,
                value: format!("{:?}", value.to_string_lossy()),
                origin: Origin::Env(name),
                reason: "not valid UTF-8".to_string(),
            }),
        }
    }

    /// `COFFER_…` variables that are no setting: likely typos, worth a warning.
    /// The test suites' own (`COFFER_SIM_…`) are not settings but are known.
    pub fn unknown_names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str).filter(|name| {
            !KEYS.iter().any(|key| key.env == *name)
                && *name != LOG_JSON_ENV
                && *name != CONFIG_ENV
                && !name.starts_with("COFFER_SIM_")
        })
    }
}

pub(super) fn from_env(env: &Env) -> Result<Layer, ConfigError> {
    let database_url = match (
        env.get(DATABASE_URL, DATABASE_URL.env)?,
        env.get(DATABASE_URL_FILE, DATABASE_URL_FILE.env)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict {
                first: DATABASE_URL.env,
                second: DATABASE_URL_FILE.env,
                place: "the environment".to_string(),
            })
        }
        (url, None) => url,
        (None, Some(path)) => Some(read_secret(DATABASE_URL_FILE, path)?),
    };
    let log_format = match (
        env.get(LOG_FORMAT, LOG_FORMAT.env)?,
        env.get(LOG_FORMAT, LOG_JSON_ENV)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict {
                first: LOG_FORMAT.env,
                second: LOG_JSON_ENV,
                place: "the environment".to_string(),
            })
        }
        (format, None) => format,
        (None, Some(json)) => Some(log_format_from_boolean(json)?),
    };
    let get = |key: Key| env.get(key, key.env);
    Ok(Layer {
        listen: get(LISTEN)?,
        tls_cert: get(TLS_CERT)?,
        tls_key: get(TLS_KEY)?,
        rate_limit_per_second: get(RATE_LIMIT)?,
        auth_rate_limit_per_second: get(AUTH_RATE_LIMIT)?,
        trusted_proxies: get(TRUSTED_PROXIES)?,
        database_url,
        data_dir: get(DATA_DIR)?,
        reader_connections: get(READER_CONNECTIONS)?,
        log_format,
        log_filter: get(LOG_FILTER)?,
        retention_hours: get(RETENTION_HOURS)?,
        passkeys_rp_id: get(PASSKEYS_RP_ID)?,
        passkeys_origin: get(PASSKEYS_ORIGIN)?,
        master_key_file: get(MASTER_KEY_FILE)?,
        previous_master_key_file: get(PREVIOUS_MASTER_KEY_FILE)?,
        // The payment tables are file-only: no variable per fee rule field.
        payments: None,
        watchlist_file: get(WATCHLIST_FILE)?,
        match_threshold_bps: get(MATCH_THRESHOLD)?,
        large_value_threshold_cny: get(LARGE_VALUE_CNY)?,
        top_ups_limited_tiers: get(TOP_UPS_LIMITED_TIERS)?,
        smtp_host: get(SMTP_HOST)?,
        smtp_port: get(SMTP_PORT)?,
        smtp_tls: get(SMTP_TLS)?,
        smtp_username: get(SMTP_USERNAME)?,
        smtp_password: get(SMTP_PASSWORD_FILE)?
            .map(|path| read_secret(SMTP_PASSWORD_FILE, path))
            .transpose()?,
        smtp_from: get(SMTP_FROM)?,
    })
}

/// `COFFER_LOG_JSON` predates `log.format`; it took clap's boolean spellings.
fn log_format_from_boolean(raw: Sourced<String>) -> Result<Sourced<String>, ConfigError> {
    let format = match raw.value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => "json",
        "0" | "false" | "no" | "off" => "text",
        _ => {
            return Err(ConfigError::Invalid {
                key: LOG_FORMAT.name,
                value: format!("{:?}", raw.value),
                origin: raw.origin,
                reason: "expected true or false".to_string(),
            })
        }
    };
    Ok(Sourced::new(format.to_string(), raw.origin))
}

/// Reads a secret from the file at `path`, dropping the trailing newline that
/// editors and `echo` add. The value's origin names both the file and what
/// pointed at it; the secret itself never appears in an error.
fn read_secret(key: Key, path: Sourced<String>) -> Result<Sourced<String>, ConfigError> {
    match std::fs::read_to_string(&path.value) {
        Ok(text) => Ok(Sourced::new(
            text.trim_end_matches(['\n', '\r']).to_string(),
            Origin::SecretFile {
                path: PathBuf::from(&path.value),
                named_by: Box::new(path.origin),
            },
        )),
        Err(error) => Err(ConfigError::Invalid {
            key: key.name,
            value: format!("{:?}", path.value),
            origin: path.origin,
            reason: format!("cannot read the secret file: {error}"),
        }),
    }
}

/// The TOML file's path: `--config`, else `COFFER_CONFIG`, else no file.
pub(super) fn config_file(
    flags: &Flags,
    env: &Env,
) -> Result<Option<Sourced<PathBuf>>, ConfigError> {
    if let Some(path) = &flags.config {
        return Ok(Some(Sourced::new(path.clone(), Origin::Flag("--config"))));
    }
    let file = env.get(
        Key {
            name: "config file",
            env: CONFIG_ENV,
        },
        CONFIG_ENV,
    )?;
    Ok(file.map(|raw| Sourced::new(PathBuf::from(raw.value), raw.origin)))
}

/// The TOML file's shape. Unknown keys are errors: a misspelt key silently
/// ignored would leave a default in force that the operator meant to change.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: FileServer,
    database: FileDatabase,
    log: FileLog,
    idempotency: FileIdempotency,
    passkeys: FilePasskeys,
    vault: FileVault,
    p2p: FileP2p,
    fees: FileFees,
    compliance: FileCompliance,
    limits: FileLimits,
    smtp: FileSmtp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileLimits {
    top_ups_limited_tiers: Option<Vec<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileCompliance {
    watchlist_file: Option<String>,
    match_threshold_bps: Option<u64>,
    large_value_threshold_cny: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileSmtp {
    host: Option<String>,
    port: Option<u64>,
    tls: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    from: Option<String>,
}

/// The payment settings as the file gives them; checked in `validate`.
#[derive(Debug, Default, Clone)]
pub(super) struct FilePayments {
    pub p2p: FileP2p,
    pub fees: FileFees,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileP2p {
    pub quote_ttl_seconds: Option<i64>,
    pub step_up_threshold: Option<i64>,
    pub exempt_payment_max: Option<i64>,
    pub exempt_daily_total_max: Option<i64>,
    pub exempt_daily_count_max: Option<i64>,
    pub lookups_per_hour_max: Option<i64>,
    pub lookups_per_ip_per_hour_max: Option<i64>,
    pub request_ttl_seconds: Option<i64>,
}

/// One table per operation; a table overrides the built-in rule's fields
/// that it names and keeps the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileFees {
    pub p2p: Option<FileFeeRule>,
    pub withdrawal: Option<FileFeeRule>,
    pub merchant_payment: Option<FileFeeRule>,
    pub bill_payment: Option<FileFeeRule>,
    /// `[fees.merchant_discount.mcc.<code>]` and
    /// `[fees.merchant_discount.merchant.<merchant id>]`: the merchant
    /// discount rate settlements charge.
    pub merchant_discount: FileMerchantDiscount,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileMerchantDiscount {
    pub mcc: BTreeMap<String, FileDiscountRule>,
    pub merchant: BTreeMap<String, FileDiscountRule>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileDiscountRule {
    pub percent_bps: Option<i64>,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileFeeRule {
    pub fixed: Option<i64>,
    pub percent_bps: Option<i64>,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub free_per_month: Option<i64>,
    pub first_free: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    rate_limit_per_second: Option<u64>,
    auth_rate_limit_per_second: Option<u64>,
    trusted_proxies: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    url_file: Option<String>,
    data_dir: Option<String>,
    reader_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
    filter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileIdempotency {
    retention_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FilePasskeys {
    rp_id: Option<String>,
    origin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileVault {
    master_key_file: Option<String>,
    previous_master_key_file: Option<String>,
}

pub(super) fn from_file(file: &Sourced<PathBuf>) -> Result<Layer, ConfigError> {
    let path = &file.value;
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::FileUnreadable {
        path: path.clone(),
        origin: file.origin.clone(),
        error,
    })?;
    let parsed = parse_toml(path, &text)?;
    let origin = Origin::File(path.clone());
    let value = |value: Option<String>| value.map(|value| Sourced::new(value, origin.clone()));
    let number =
        |value: Option<u64>| value.map(|value| Sourced::new(value.to_string(), origin.clone()));
    let database_url = match (parsed.database.url, parsed.database.url_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict {
                first: DATABASE_URL.name,
                second: DATABASE_URL_FILE.name,
                place: path.display().to_string(),
            })
        }
        (url, None) => value(url),
        (None, Some(secret)) => Some(read_secret(
            DATABASE_URL_FILE,
            Sourced::new(secret, origin.clone()),
        )?),
    };
    let smtp_password = parsed
        .smtp
        .password_file
        .map(|path| read_secret(SMTP_PASSWORD_FILE, Sourced::new(path, origin.clone())))
        .transpose()?;
    Ok(Layer {
        smtp_host: value(parsed.smtp.host),
        smtp_port: number(parsed.smtp.port),
        smtp_tls: value(parsed.smtp.tls),
        smtp_username: value(parsed.smtp.username),
        smtp_password,
        smtp_from: value(parsed.smtp.from),
        listen: value(parsed.server.listen),
        tls_cert: value(parsed.server.tls_cert),
        tls_key: value(parsed.server.tls_key),
        rate_limit_per_second: number(parsed.server.rate_limit_per_second),
        auth_rate_limit_per_second: number(parsed.server.auth_rate_limit_per_second),
        trusted_proxies: value(parsed.server.trusted_proxies),
        database_url,
        data_dir: value(parsed.database.data_dir),
        reader_connections: number(parsed.database.reader_connections),
        log_format: value(parsed.log.format),
        log_filter: value(parsed.log.filter),
        retention_hours: parsed
            .idempotency
            .retention_hours
            .map(|hours| Sourced::new(hours.to_string(), origin.clone())),
        passkeys_rp_id: value(parsed.passkeys.rp_id),
        passkeys_origin: value(parsed.passkeys.origin),
        master_key_file: value(parsed.vault.master_key_file),
        previous_master_key_file: value(parsed.vault.previous_master_key_file),
        watchlist_file: value(parsed.compliance.watchlist_file),
        match_threshold_bps: number(parsed.compliance.match_threshold_bps),
        large_value_threshold_cny: number(parsed.compliance.large_value_threshold_cny),
        top_ups_limited_tiers: parsed.limits.top_ups_limited_tiers.map(|tiers| {
            let listed: Vec<String> = tiers.iter().map(u64::to_string).collect();
            Sourced::new(listed.join(","), origin.clone())
        }),
        // Only a file that names a payment table is its origin.
        payments: (parsed.p2p != FileP2p::default() || parsed.fees != FileFees::default()).then(
            || {
                Sourced::new(
                    FilePayments {
                        p2p: parsed.p2p,
                        fees: parsed.fees,
                    },
                    origin.clone(),
                )
            },
        ),
    })
}

/// Parses the file, turning toml's errors into one line naming the file,
/// the line and the dotted key.
fn parse_toml(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let line = |span: Option<std::ops::Range<usize>>| {
        span.and_then(|span| text.get(..span.start))
            .map(|before| before.matches('\n').count() + 1)
    };
    let location = |line: Option<usize>, key: Option<&str>| {
        let mut location = path.display().to_string();
        if let Some(line) = line {
            location.push_str(&format!(", line {line}"));
        }
        if let Some(key) = key {
            location.push_str(&format!(": {key}"));
        }
        location
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|error| ConfigError::File {
        location: location(line(error.span()), None),
        message: error.message().to_string(),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let error = error.into_inner();
        ConfigError::File {
            location: location(line(error.span()), Some(&key)),
            message: error.message().replacen("unknown field", "unknown key", 1),
        }
    })
}
