//! Layering, secrets from files, and every validation message.

use std::path::{Path, PathBuf};

use super::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn with_file(path: &Path) -> Flags {
    Flags {
        config: Some(path.to_path_buf()),
        ..Flags::default()
    }
}

fn error(flags: &Flags, env: &[(&str, &str)]) -> String {
    match load(flags, &Env::from_pairs(env)) {
        Ok(config) => panic!("expected a config error, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn error_in_file(toml: &str) -> String {
    let dir = dir();
    let path = write(dir.path(), "coffer.toml", toml);
    error(&with_file(&path), &[]).replace(&path.display().to_string(), "FILE")
}

/// A self-signed certificate and its key for `localhost`, as PEM files.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    (
        write(dir, &format!("{name}.crt"), &generated.cert.pem()),
        write(
            dir,
            &format!("{name}.key"),
            &generated.signing_key.serialize_pem(),
        ),
    )
}

#[test]
fn with_nothing_set_the_defaults_apply() {
    let config = load(&Flags::default(), &Env::default()).expect("config");
    assert_eq!(config.server.listen.value.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.server.listen.origin, Origin::Default);
    assert!(config.server.tls.is_none());
    assert_eq!(
        config.server.rate_limits(),
        coffer_api::RateLimits::default()
    );
    assert_eq!(
        config.database.url.value,
        Database::Sqlite(PathBuf::from("coffer-data/coffer.db"))
    );
    assert_eq!(
        config.database.reader_connections.value,
        DEFAULT_READER_CONNECTIONS
    );
    assert_eq!(config.log.format.value, LogFormat::Text);
    assert_eq!(config.log.filter.value, "info");
    assert_eq!(
        config.idempotency.retention_hours.value,
        coffer_api::idempotency::IDEMPOTENCY_RETENTION_HOURS
    );
    assert_eq!(config.passkeys.rp_id.value, "localhost");
    assert_eq!(config.passkeys.rp_id.origin, Origin::Default);
    assert_eq!(config.passkeys.origin.value, "http://localhost:8080");
    assert_eq!(config.passkeys.origin.origin, Origin::Default);
    let settings = config.passkeys.settings();
    let defaults = coffer_identity::PasskeySettings::default();
    assert_eq!(
        (settings.rp_id, settings.origin),
        (defaults.rp_id, defaults.origin)
    );
    assert!(config.warnings.is_empty());
}

#[test]
fn file_overrides_defaults_env_overrides_file_flags_override_env() {
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.toml",
        r#"
        [server]
        listen = "127.0.0.1:1111"
        [database]
        data_dir = "/var/lib/from-file"
        reader_connections = 3
        [log]
        format = "json"
        filter = "debug"
        [idempotency]
        retention_hours = 72
        "#,
    );
    let env = [
        ("COFFER_LISTEN", "127.0.0.1:2222"),
        ("COFFER_DATA_DIR", "/var/lib/from-env"),
        ("COFFER_LOG", "warn"),
    ];
    let flags = Flags {
        listen: Some("127.0.0.1:3333".to_string()),
        ..with_file(&path)
    };
    let config = load(&flags, &Env::from_pairs(&env)).expect("config");
    let file = Origin::File(path.clone());

    assert_eq!(config.server.listen.value.port(), 3333);
    assert_eq!(config.server.listen.origin, Origin::Flag("--listen"));
    assert_eq!(
        config.database.data_dir.value,
        PathBuf::from("/var/lib/from-env")
    );
    assert_eq!(
        config.database.data_dir.origin,
        Origin::Env("COFFER_DATA_DIR")
    );
    // The default URL follows the data directory, whichever layer set it.
    assert_eq!(
        config.database.url.value,
        Database::Sqlite(PathBuf::from("/var/lib/from-env/coffer.db"))
    );
    assert_eq!(config.database.url.origin, Origin::Default);
    assert_eq!(config.database.reader_connections.value, 3);
    assert_eq!(config.database.reader_connections.origin, file);
    assert_eq!(config.log.format.value, LogFormat::Json);
    assert_eq!(config.log.format.origin, file);
    assert_eq!(config.log.filter.value, "warn");
    assert_eq!(config.log.filter.origin, Origin::Env("COFFER_LOG"));
    assert_eq!(config.idempotency.retention_hours.value, 72);
}

#[test]
fn the_config_file_may_come_from_coffer_config() {
    let dir = dir();
    let path = write(
        dir.path(),
        "c.toml",
        "[server]\nlisten = \"127.0.0.1:4444\"\n",
    );
    let env = [("COFFER_CONFIG", path.to_str().expect("utf-8"))];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    assert_eq!(config.server.listen.value.port(), 4444);
    assert_eq!(config.server.listen.origin, Origin::File(path));
}

#[test]
fn the_older_variables_keep_working() {
    let env = [
        ("COFFER_LISTEN", "0.0.0.0:9000"),
        ("COFFER_DATABASE_URL", "postgres://coffer@db/coffer"),
        ("COFFER_DATA_DIR", "/srv/coffer"),
        ("COFFER_LOG_JSON", "true"),
    ];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    assert_eq!(config.server.listen.value.to_string(), "0.0.0.0:9000");
    assert_eq!(
        config.database.url.value,
        Database::Postgres("postgres://coffer@db/coffer".to_string())
    );
    assert_eq!(config.database.data_dir.value, PathBuf::from("/srv/coffer"));
    assert_eq!(config.log.format.value, LogFormat::Json);
    assert_eq!(config.log.format.origin, Origin::Env("COFFER_LOG_JSON"));

    let off = load(
        &Flags::default(),
        &Env::from_pairs(&[("COFFER_LOG_JSON", "false")]),
    )
    .expect("config");
    assert_eq!(off.log.format.value, LogFormat::Text);
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let config = load(
        &Flags::default(),
        &Env::from_pairs(&[("COFFER_LISTEN", ""), ("COFFER_LOG_JSON", "")]),
    )
    .expect("config");
    assert_eq!(config.server.listen.origin, Origin::Default);
    assert_eq!(config.log.format.value, LogFormat::Text);
}

#[test]
fn flags_override_the_older_variables() {
    let flags = Flags {
        database_url: Some("sqlite://flag.db".to_string()),
        log_json: true,
        ..Flags::default()
    };
    let env = [
        ("COFFER_DATABASE_URL", "sqlite://env.db"),
        ("COFFER_LOG_FORMAT", "text"),
    ];
    let config = load(&flags, &Env::from_pairs(&env)).expect("config");
    assert_eq!(
        config.database.url.value,
        Database::Sqlite(PathBuf::from("flag.db"))
    );
    assert_eq!(config.database.url.origin, Origin::Flag("--db"));
    assert_eq!(config.log.format.value, LogFormat::Json);
    assert_eq!(config.log.format.origin, Origin::Flag("--log-json"));
}

#[test]
fn the_database_url_can_come_from_a_secret_file_named_by_the_environment() {
    let dir = dir();
    let secret = write(dir.path(), "db-url", "postgres://coffer:s3cret@db/coffer\n");
    let env = [("COFFER_DATABASE_URL_FILE", secret.to_str().expect("utf-8"))];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    // The trailing newline is dropped.
    assert_eq!(
        config.database.url.value,
        Database::Postgres("postgres://coffer:s3cret@db/coffer".to_string())
    );
    assert_eq!(
        config.database.url.origin,
        Origin::SecretFile {
            path: secret.clone(),
            named_by: Box::new(Origin::Env("COFFER_DATABASE_URL_FILE")),
        }
    );
    assert_eq!(
        config.database.url.origin.to_string(),
        format!(
            "file {} named by COFFER_DATABASE_URL_FILE",
            secret.display()
        )
    );
    let shown = render(&config);
    assert!(shown.contains("postgres://coffer:***@db/coffer"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn the_database_url_can_come_from_a_secret_file_named_in_the_toml_file() {
    let dir = dir();
    let secret = write(dir.path(), "db-url", "postgres://coffer:pw@db/coffer\r\n");
    let path = write(
        dir.path(),
        "coffer.toml",
        &format!(
            "[database]\nurl_file = {:?}\n",
            secret.display().to_string()
        ),
    );
    let config = load(&with_file(&path), &Env::default()).expect("config");
    assert_eq!(
        config.database.url.value,
        Database::Postgres("postgres://coffer:pw@db/coffer".to_string())
    );
    assert_eq!(
        config.database.url.origin,
        Origin::SecretFile {
            path: secret,
            named_by: Box::new(Origin::File(path)),
        }
    );
}

#[test]
fn a_higher_layer_overrides_a_secret_file_below_it() {
    let dir = dir();
    let secret = write(dir.path(), "db-url", "postgres://coffer:pw@db/coffer");
    let path = write(
        dir.path(),
        "coffer.toml",
        &format!(
            "[database]\nurl_file = {:?}\n",
            secret.display().to_string()
        ),
    );
    let env = [("COFFER_DATABASE_URL", "sqlite://env.db")];
    let config = load(&with_file(&path), &Env::from_pairs(&env)).expect("config");
    assert_eq!(
        config.database.url.origin,
        Origin::Env("COFFER_DATABASE_URL")
    );
}

#[test]
fn a_value_and_its_secret_file_together_are_an_error() {
    assert_eq!(
        error(
            &Flags::default(),
            &[
                ("COFFER_DATABASE_URL", "sqlite://a.db"),
                ("COFFER_DATABASE_URL_FILE", "/run/secrets/db"),
            ]
        ),
        "COFFER_DATABASE_URL and COFFER_DATABASE_URL_FILE are both set in the environment: set only one"
    );
    assert_eq!(
        error_in_file("[database]\nurl = \"sqlite://a.db\"\nurl_file = \"/run/secrets/db\"\n"),
        "database.url and database.url_file are both set in FILE: set only one"
    );
}

#[test]
fn a_missing_secret_file_names_the_key_and_its_origin() {
    let message = error(
        &Flags::default(),
        &[("COFFER_DATABASE_URL_FILE", "/nonexistent/db-url")],
    );
    assert!(
        message.starts_with(
            "database.url_file = \"/nonexistent/db-url\" (from COFFER_DATABASE_URL_FILE): cannot read the secret file:"
        ),
        "{message}"
    );
}

#[test]
fn a_bad_listen_address_names_the_key_and_the_variable() {
    assert_eq!(
        error(&Flags::default(), &[("COFFER_LISTEN", "localhost")]),
        "server.listen = \"localhost\" (from COFFER_LISTEN): not a socket address like 127.0.0.1:8080 or [::]:8443"
    );
    let flags = Flags {
        listen: Some("8080".to_string()),
        ..Flags::default()
    };
    assert!(error(&flags, &[]).starts_with("server.listen = \"8080\" (from --listen):"));
}

#[test]
fn trusted_proxies_are_address_blocks_and_a_bad_one_is_named() {
    assert_eq!(
        error(&Flags::default(), &[("COFFER_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, lb.internal")]),
        "server.trusted_proxies = \"10.0.0.0/8, lb.internal\" (from COFFER_SERVER_TRUSTED_PROXIES): \"lb.internal\" is not an IP address or CIDR block"
    );
}

#[test]
fn an_unknown_key_in_the_file_is_named_with_its_line() {
    assert_eq!(
        error_in_file("[server]\nlisten = \"127.0.0.1:8080\"\nlisen = \"x\"\n"),
        "FILE, line 3: server.lisen: unknown key `lisen`, expected one of `listen`, `tls_cert`, `tls_key`, `rate_limit_per_second`, `auth_rate_limit_per_second`, `trusted_proxies`"
    );
    assert_eq!(
        error_in_file("[databse]\nurl = \"x\"\n"),
        "FILE, line 1: databse: unknown key `databse`, expected one of `server`, `database`, `log`, `idempotency`, `passkeys`, `vault`, `p2p`, `fees`, `compliance`, `limits`, `smtp`"
    );
}

#[test]
fn compliance_settings_come_from_the_file_or_the_environment_and_are_checked() {
    assert!(error(
        &Flags::default(),
        &[("COFFER_COMPLIANCE_MATCH_THRESHOLD_BPS", "12000")]
    )
    .starts_with("compliance.match_threshold_bps = \"12000\" (from COFFER_COMPLIANCE_MATCH_THRESHOLD_BPS): expected a whole number from 5000 to 10000"));
    assert!(error(
        &Flags::default(),
        &[("COFFER_COMPLIANCE_WATCHLIST_FILE", "/nonexistent/list.csv")]
    )
    .starts_with("compliance.watchlist_file = \"/nonexistent/list.csv\""));
    let env = Env::from_pairs(&[
        ("COFFER_COMPLIANCE_MATCH_THRESHOLD_BPS", "9000"),
        ("COFFER_COMPLIANCE_LARGE_VALUE_THRESHOLD_CNY", "2000000"),
    ]);
    let config = load(&Flags::default(), &env).expect("config");
    assert_eq!(config.compliance.match_threshold_bps.value, 9000);
    assert_eq!(
        config
            .compliance
            .report_settings()
            .large_value_thresholds
            .get("CNY"),
        Some(&2_000_000)
    );
    assert!(render(&config).contains("match_threshold_bps = 9000"));
}

#[test]
fn a_wrongly_typed_value_in_the_file_is_named_with_its_line() {
    assert_eq!(
        error_in_file("[database]\nreader_connections = \"eight\"\n"),
        "FILE, line 2: database.reader_connections: invalid type: string \"eight\", expected u64"
    );
}

#[test]
fn a_syntax_error_in_the_file_names_the_line() {
    let message = error_in_file("[server\nlisten = 1\n");
    assert!(message.starts_with("FILE, line 1: "), "{message}");
}

#[test]
fn a_config_file_given_but_absent_is_an_error() {
    let flags = with_file(Path::new("/nonexistent/coffer.toml"));
    let message = error(&flags, &[]);
    assert!(
        message.starts_with("config file /nonexistent/coffer.toml (from --config): "),
        "{message}"
    );
    let message = error(
        &Flags::default(),
        &[("COFFER_CONFIG", "/nonexistent/coffer.toml")],
    );
    assert!(message.contains("(from COFFER_CONFIG)"), "{message}");
}

#[test]
fn a_bad_database_url_is_named_without_its_password() {
    let message = error(
        &Flags::default(),
        &[("COFFER_DATABASE_URL", "mysql://coffer:hunter2@db/coffer")],
    );
    assert_eq!(
        message,
        "database.url = \"mysql://…\" (from COFFER_DATABASE_URL): not a database URL: expected sqlite://PATH or postgres://USER@HOST/DB"
    );
}

#[test]
fn numbers_out_of_range_name_the_key_and_the_bounds() {
    assert_eq!(
        error_in_file("[database]\nreader_connections = 0\n"),
        "database.reader_connections = \"0\" (from FILE): expected a whole number from 1 to 256"
    );
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_IDEMPOTENCY_RETENTION_HOURS", "12")]
        ),
        "idempotency.retention_hours = \"12\" (from COFFER_IDEMPOTENCY_RETENTION_HOURS): expected a whole number from 24 to 8784"
    );
    assert!(error(
        &Flags::default(),
        &[("COFFER_DATABASE_READER_CONNECTIONS", "eight")]
    )
    .starts_with(
        "database.reader_connections = \"eight\" (from COFFER_DATABASE_READER_CONNECTIONS)"
    ));
}

#[test]
fn log_settings_are_checked() {
    assert_eq!(
        error(&Flags::default(), &[("COFFER_LOG_FORMAT", "xml")]),
        "log.format = \"xml\" (from COFFER_LOG_FORMAT): expected \"text\" or \"json\""
    );
    assert_eq!(
        error(&Flags::default(), &[("COFFER_LOG_JSON", "maybe")]),
        "log.format = \"maybe\" (from COFFER_LOG_JSON): expected true or false"
    );
    assert!(error(&Flags::default(), &[("COFFER_LOG", "info,[[[")])
        .starts_with("log.filter = \"info,[[[\" (from COFFER_LOG): not a log filter"),);
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_LOG_FORMAT", "json"), ("COFFER_LOG_JSON", "1")]
        ),
        "COFFER_LOG_FORMAT and COFFER_LOG_JSON are both set in the environment: set only one"
    );
}

#[test]
fn an_empty_data_dir_is_an_error() {
    assert_eq!(
        error_in_file("[database]\ndata_dir = \"\"\n"),
        "database.data_dir = \"\" (from FILE): empty"
    );
}

#[test]
fn tls_loads_a_certificate_and_its_key() {
    let dir = dir();
    let (cert, key) = certificate(dir.path(), "server");
    let env = [
        ("COFFER_SERVER_TLS_CERT", cert.to_str().expect("utf-8")),
        ("COFFER_SERVER_TLS_KEY", key.to_str().expect("utf-8")),
    ];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    let tls = config.server.tls.expect("tls");
    assert_eq!(tls.cert.value, cert);
    assert_eq!(tls.key.origin, Origin::Env("COFFER_SERVER_TLS_KEY"));
}

#[test]
fn tls_needs_both_files() {
    let dir = dir();
    let (cert, _) = certificate(dir.path(), "server");
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_SERVER_TLS_CERT", cert.to_str().expect("utf-8"))]
        ),
        "server.tls_cert is set (from COFFER_SERVER_TLS_CERT) but server.tls_key is not: set both or neither"
    );
}

#[test]
fn tls_file_errors_name_the_key() {
    let dir = dir();
    let (cert, key) = certificate(dir.path(), "server");
    let (_, other_key) = certificate(dir.path(), "other");
    let not_pem = write(dir.path(), "garbage.pem", "not a certificate\n");
    let tls_file = |cert: &Path, key: &Path| {
        let message = error_in_file(&format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
        message.replace(&dir.path().display().to_string(), "DIR")
    };
    assert_eq!(
        tls_file(Path::new("/nonexistent/cert.pem"), &key),
        "server.tls_cert = \"/nonexistent/cert.pem\" (from FILE): no such file"
    );
    assert_eq!(
        tls_file(&cert, Path::new("/nonexistent/key.pem")),
        "server.tls_key = \"/nonexistent/key.pem\" (from FILE): no such file"
    );
    assert_eq!(
        tls_file(&not_pem, &key),
        "server.tls_cert = \"DIR/garbage.pem\" (from FILE): no PEM certificate (-----BEGIN CERTIFICATE-----) in the file"
    );
    assert_eq!(
        tls_file(&cert, &not_pem),
        "server.tls_key = \"DIR/garbage.pem\" (from FILE): no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file"
    );
    // A key in place of the certificate holds no certificate.
    assert!(tls_file(&key, &key).starts_with("server.tls_cert = "));
    assert_eq!(
        tls_file(&cert, &other_key),
        "server.tls_key = \"DIR/other.key\" (from FILE): does not match the certificate in server.tls_cert"
    );
}

#[test]
fn unknown_coffer_variables_are_warned_about() {
    let env = [
        ("COFFER_SERVER_LISTEN", "127.0.0.1:1"),
        ("COFFER_SIM_SEED", "7"),
        ("COFFER_CONFIG", ""),
    ];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    assert_eq!(
        config.warnings,
        vec!["COFFER_SERVER_LISTEN is not a Coffer setting; ignored (a typo?)".to_string()]
    );
}

#[test]
fn check_shows_each_value_with_its_origin() {
    let env = [("COFFER_LISTEN", "127.0.0.1:9999")];
    let config = load(&Flags::default(), &Env::from_pairs(&env)).expect("config");
    let shown = render(&config);
    let listen = shown
        .lines()
        .find(|line| line.starts_with("listen = "))
        .expect("listen line");
    assert!(
        listen.starts_with("listen = \"127.0.0.1:9999\"") && listen.ends_with("# COFFER_LISTEN"),
        "{shown}"
    );
    assert!(shown.contains("retention_hours = 48"), "{shown}");
    // The output is itself a valid config file.
    let dir = dir();
    let path = write(dir.path(), "again.toml", &shown);
    let again = load(&with_file(&path), &Env::default()).expect("render parses");
    assert_eq!(again.server.listen.value, config.server.listen.value);
}

fn repository_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_example_file_parses_and_validates() {
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.example.toml",
        &repository_file("docs/coffer.example.toml"),
    );
    let config = load(&with_file(&path), &Env::default()).expect("example config");
    assert_eq!(config.server.listen.origin, Origin::File(path));
    // The example's payment tables show the built-in values.
    let (shown, built_in) = (
        &config.payments.value,
        coffer_payments::P2pPolicy::default(),
    );
    assert_eq!(shown.fees, built_in.fees);
    assert_eq!(
        (
            shown.step_up_threshold,
            shown.exempt_payment_max,
            shown.exempt_daily_total_max
        ),
        (
            built_in.step_up_threshold,
            built_in.exempt_payment_max,
            built_in.exempt_daily_total_max
        )
    );
    assert_eq!(
        (
            shown.quote_ttl_seconds,
            shown.lookups_per_hour_max,
            shown.request_ttl_seconds,
            shown.exempt_daily_count_max
        ),
        (
            built_in.quote_ttl_seconds,
            built_in.lookups_per_hour_max,
            built_in.request_ttl_seconds,
            built_in.exempt_daily_count_max
        )
    );
}

#[test]
fn the_readme_documents_every_key_and_variable() {
    let readme = repository_file("README.md");
    let example = repository_file("docs/coffer.example.toml");
    for key in KEYS {
        let (section, name) = key.name.split_once('.').expect("dotted");
        assert!(
            readme.contains(&format!("`{}`", key.name)),
            "README lacks {}",
            key.name
        );
        assert!(
            readme.contains(&format!("`{}`", key.env)),
            "README lacks {}",
            key.env
        );
        assert!(
            example.contains(&format!("[{section}]")) && example.contains(name),
            "example lacks {}",
            key.name
        );
    }
    for name in [LOG_JSON_ENV, CONFIG_ENV] {
        assert!(readme.contains(name), "README lacks {name}");
    }
}

#[test]
fn rate_limits_come_from_the_file_or_the_environment_and_zero_is_off() {
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.toml",
        "[server]\nrate_limit_per_second = 300\nauth_rate_limit_per_second = 20\n",
    );
    let config = load(&with_file(&path), &Env::default()).expect("config");
    assert_eq!(config.server.rate_limit_per_second.value, 300);
    assert_eq!(
        config.server.rate_limit_per_second.origin,
        Origin::File(path.clone())
    );
    let limits = config.server.rate_limits();
    assert_eq!(
        (limits.general.per_second, limits.general.burst),
        (300, 600)
    );
    assert_eq!((limits.auth.per_second, limits.auth.burst), (20, 40));
    let env = Env::from_pairs(&[("COFFER_SERVER_AUTH_RATE_LIMIT_PER_SECOND", "0")]);
    let config = load(&with_file(&path), &env).expect("config");
    assert_eq!(
        config.server.rate_limits().auth,
        coffer_api::Rate::UNLIMITED
    );
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_SERVER_RATE_LIMIT_PER_SECOND", "-1")]
        ),
        "server.rate_limit_per_second = \"-1\" (from COFFER_SERVER_RATE_LIMIT_PER_SECOND): expected a whole number from 0 to 1000000"
    );
}

#[test]
fn passkey_settings_come_from_the_file_and_the_environment() {
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.toml",
        "[passkeys]\nrp_id = \"example.com\"\norigin = \"https://example.com\"\n",
    );
    let config = load(&with_file(&path), &Env::default()).expect("config");
    let file = Origin::File(path.clone());
    assert_eq!(config.passkeys.rp_id.value, "example.com");
    assert_eq!(config.passkeys.rp_id.origin, file);
    assert_eq!(config.passkeys.origin.value, "https://example.com");
    assert_eq!(config.passkeys.origin.origin, file);

    // The environment overrides the file, key by key.
    let env = Env::from_pairs(&[("COFFER_PASSKEYS_ORIGIN", "https://wallet.example.com:8443")]);
    let config = load(&with_file(&path), &env).expect("config");
    assert_eq!(config.passkeys.rp_id.origin, file);
    assert_eq!(
        config.passkeys.origin.value,
        "https://wallet.example.com:8443"
    );
    assert_eq!(
        config.passkeys.origin.origin,
        Origin::Env("COFFER_PASSKEYS_ORIGIN")
    );
    let settings = config.passkeys.settings();
    assert_eq!(settings.rp_id, "example.com");
    assert_eq!(settings.origin, "https://wallet.example.com:8443");

    let env = Env::from_pairs(&[
        ("COFFER_PASSKEYS_RP_ID", "bank.test"),
        ("COFFER_PASSKEYS_ORIGIN", "https://bank.test"),
    ]);
    let config = load(&Flags::default(), &env).expect("config");
    assert_eq!(config.passkeys.rp_id.value, "bank.test");
    assert_eq!(
        config.passkeys.rp_id.origin,
        Origin::Env("COFFER_PASSKEYS_RP_ID")
    );
    let shown = render(&config);
    assert!(shown.contains("[passkeys]"), "{shown}");
    let rp_id = shown
        .lines()
        .find(|line| line.starts_with("rp_id = "))
        .expect("rp_id line");
    assert!(
        rp_id.starts_with("rp_id = \"bank.test\"") && rp_id.ends_with("# COFFER_PASSKEYS_RP_ID"),
        "{shown}"
    );
    // The rendered output loads back to the same settings.
    let again = write(dir.path(), "again.toml", &shown);
    let again = load(&with_file(&again), &Env::default()).expect("render parses");
    assert_eq!(again.passkeys.origin.value, "https://bank.test");

    // http is fine on localhost, on any port.
    let env = Env::from_pairs(&[("COFFER_PASSKEYS_ORIGIN", "http://localhost:3000")]);
    let config = load(&Flags::default(), &env).expect("config");
    assert_eq!(config.passkeys.origin.value, "http://localhost:3000");
}

#[test]
fn a_bad_passkey_rp_id_names_the_key_and_the_layer() {
    let reason = "expected a bare domain name like example.com (lowercase letters, digits, dots and hyphens; no scheme or port)";
    for bad in [
        "https://example.com",
        "example.com:443",
        "Example.com",
        "example..com",
        ".example.com",
        "-bank.example",
        "bank_1.example",
        "example.com/",
    ] {
        assert_eq!(
            error(&Flags::default(), &[("COFFER_PASSKEYS_RP_ID", bad)]),
            format!("passkeys.rp_id = {bad:?} (from COFFER_PASSKEYS_RP_ID): {reason}")
        );
    }
    assert_eq!(
        error_in_file("[passkeys]\nrp_id = \"https://example.com\"\n"),
        format!("passkeys.rp_id = \"https://example.com\" (from FILE): {reason}")
    );
}

#[test]
fn a_bad_passkey_origin_names_the_key_and_the_layer() {
    let origin_error = |rp_id: &str, origin: &str| {
        error(
            &Flags::default(),
            &[
                ("COFFER_PASSKEYS_RP_ID", rp_id),
                ("COFFER_PASSKEYS_ORIGIN", origin),
            ],
        )
    };
    assert_eq!(
        origin_error("example.com", "example.com"),
        "passkeys.origin = \"example.com\" (from COFFER_PASSKEYS_ORIGIN): expected an http:// or https:// URL like https://wallet.example.com"
    );
    assert_eq!(
        origin_error("example.com", "ftp://example.com"),
        "passkeys.origin = \"ftp://example.com\" (from COFFER_PASSKEYS_ORIGIN): expected an http:// or https:// URL like https://wallet.example.com"
    );
    for with_path in [
        "https://example.com/",
        "https://example.com/app",
        "https://example.com?x=1",
        "https://example.com#top",
    ] {
        assert_eq!(
            origin_error("example.com", with_path),
            format!("passkeys.origin = {with_path:?} (from COFFER_PASSKEYS_ORIGIN): expected no path, query or fragment: only scheme, host and optional port")
        );
    }
    for bad_host in [
        "https://",
        "https://Example.com",
        "https://example.com:",
        "https://example.com:0",
        "https://example.com:99999",
        "https://example.com:+443",
        "https://user@example.com",
    ] {
        assert_eq!(
            origin_error("example.com", bad_host),
            format!("passkeys.origin = {bad_host:?} (from COFFER_PASSKEYS_ORIGIN): expected a lowercase domain name and optional port after the scheme, like https://wallet.example.com:8443")
        );
    }
    assert_eq!(
        origin_error("example.com", "https://badexample.com"),
        "passkeys.origin = \"https://badexample.com\" (from COFFER_PASSKEYS_ORIGIN): host \"badexample.com\" is not passkeys.rp_id (\"example.com\", from COFFER_PASSKEYS_RP_ID) or a subdomain of it"
    );
    assert_eq!(
        origin_error("wallet.example.com", "https://example.com"),
        "passkeys.origin = \"https://example.com\" (from COFFER_PASSKEYS_ORIGIN): host \"example.com\" is not passkeys.rp_id (\"wallet.example.com\", from COFFER_PASSKEYS_RP_ID) or a subdomain of it"
    );
    assert_eq!(
        origin_error("example.com", "http://wallet.example.com"),
        "passkeys.origin = \"http://wallet.example.com\" (from COFFER_PASSKEYS_ORIGIN): https:// is required unless the host is localhost"
    );
    // Changing the rp_id alone leaves the default origin on localhost: named.
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_PASSKEYS_RP_ID", "example.com")]
        ),
        "passkeys.origin = \"http://localhost:8080\" (from default): host \"localhost\" is not passkeys.rp_id (\"example.com\", from COFFER_PASSKEYS_RP_ID) or a subdomain of it"
    );
    assert_eq!(
        error_in_file("[passkeys]\nrp_id = \"example.com\"\norigin = \"http://example.com\"\n"),
        "passkeys.origin = \"http://example.com\" (from FILE): https:// is required unless the host is localhost"
    );
}

#[test]
fn master_key_files_are_checked_at_load() {
    // Unset: the default file beside the data, created on first use.
    let config = load(&Flags::default(), &Env::default()).expect("config");
    assert_eq!(
        config.vault.master_key_file.value,
        Path::new(DEFAULT_DATA_DIR).join("master.key")
    );
    assert_eq!(config.vault.master_key_file.origin, Origin::Default);
    assert!(config.vault.previous_master_key_file.is_none());
    // A configured file must exist: a fresh key would not open the data.
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_VAULT_MASTER_KEY_FILE", "/nonexistent/master.key")]
        ),
        "vault.master_key_file = \"/nonexistent/master.key\" (from COFFER_VAULT_MASTER_KEY_FILE): no such file (make a new key with `coffer keys new-master-key --out PATH`)"
    );
    let dir = dir();
    let current = write(dir.path(), "new.key", &"ab".repeat(32));
    let previous = write(dir.path(), "old.key", &"cd".repeat(32));
    let (current, previous) = (
        current.to_str().expect("utf-8"),
        previous.to_str().expect("utf-8"),
    );
    assert!(error(
        &Flags::default(),
        &[
            ("COFFER_VAULT_MASTER_KEY_FILE", current),
            ("COFFER_VAULT_PREVIOUS_MASTER_KEY_FILE", current)
        ]
    )
    .contains("is the same file as vault.master_key_file"));
    let file = write(
        dir.path(),
        "coffer.toml",
        &format!(
            "[vault]\nmaster_key_file = {current:?}\nprevious_master_key_file = {previous:?}\n"
        ),
    );
    let config = load(&with_file(&file), &Env::default()).expect("config");
    assert_eq!(
        config.vault.master_key_file.origin,
        Origin::File(file.clone())
    );
    let provider = config.vault.key_provider().expect("key ring");
    let new = coffer_vault::LocalMasterKey::from_hex(&"ab".repeat(32)).expect("key");
    assert_eq!(provider.master_key_id(), new.id());
    // The rendered configuration names both files and loads back.
    let shown = render(&config);
    assert!(shown.contains("previous_master_key_file = "), "{shown}");
    let again = write(dir.path(), "again.toml", &shown);
    load(&with_file(&again), &Env::default()).expect("render parses");
}

#[test]
fn the_fee_schedule_and_p2p_policy_come_from_the_file() {
    use coffer_payments::{FeeOperation, FeeRule, P2pPolicy};
    let config = load(&Flags::default(), &Env::from_pairs(&[])).expect("defaults");
    assert_eq!(config.payments.origin, Origin::Default);
    assert_eq!(
        config.payments.value.step_up_threshold,
        P2pPolicy::default().step_up_threshold
    );
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.toml",
        "[p2p]\nstep_up_threshold = 300000\nlookups_per_hour_max = 10\n\n\
         [fees.withdrawal]\nfixed = 200\nfree_per_month = 2\n\n\
         [fees.bill_payment]\npercent_bps = 5\nmaximum = 100\nfirst_free = true\n",
    );
    let config = load(&with_file(&path), &Env::from_pairs(&[])).expect("config");
    let policy = &config.payments.value;
    assert_eq!(config.payments.origin, Origin::File(path.clone()));
    assert_eq!(policy.step_up_threshold, 300_000);
    assert_eq!(policy.lookups_per_hour_max, 10);
    // A table overrides the fields it names and keeps the built-in rest.
    let withdrawal = policy.fees.rule(FeeOperation::Withdrawal);
    assert_eq!((withdrawal.fixed, withdrawal.free_per_month), (200, 2));
    assert_eq!(withdrawal.percent_bps, 10);
    assert_eq!(
        policy.fees.rule(FeeOperation::BillPayment),
        FeeRule {
            percent_bps: 5,
            maximum: Some(100),
            first_free: true,
            ..FeeRule::FREE
        }
    );
    let shown = render(&config);
    assert!(shown.contains("[fees.withdrawal]"), "{shown}");
    assert!(shown.contains("step_up_threshold = 300000"), "{shown}");
}

#[test]
fn merchant_discount_rates_come_from_the_fee_schedule() {
    use coffer_payments::DiscountRule;
    let dir = dir();
    let path = write(
        dir.path(),
        "coffer.toml",
        "[fees.merchant_discount.mcc.5814]\npercent_bps = 45\nminimum = 100\nmaximum = 5000\n\n\
         [fees.merchant_discount.mcc.5812]\nmaximum = 2000\n\n\
         [fees.merchant_discount.merchant.mer_0123456789abcdef]\npercent_bps = 20\n",
    );
    let config = load(&with_file(&path), &Env::from_pairs(&[])).expect("config");
    let fees = &config.payments.value.fees;
    assert_eq!(
        fees.merchant_discount("mer_x", "5814"),
        DiscountRule {
            percent_bps: 45,
            minimum: 100,
            maximum: Some(5_000)
        }
    );
    // Fields not named keep the MCC table's rate.
    assert_eq!(
        fees.merchant_discount("mer_x", "5812"),
        DiscountRule {
            percent_bps: 38,
            minimum: 0,
            maximum: Some(2_000)
        }
    );
    assert_eq!(
        fees.merchant_discount("mer_0123456789abcdef", "5814"),
        DiscountRule::percent(20)
    );
    for (text, key) in [
        (
            "[fees.merchant_discount.mcc.7995]\npercent_bps = 45\n",
            "fees.merchant_discount.mcc.7995",
        ),
        (
            "[fees.merchant_discount.mcc.5814]\npercent_bps = 1001\n",
            "fees.merchant_discount.mcc.5814.percent_bps",
        ),
        (
            "[fees.merchant_discount.merchant.mer_a]\nminimum = 1\n",
            "fees.merchant_discount.merchant.mer_a.percent_bps",
        ),
    ] {
        let path = write(dir.path(), "bad.toml", text);
        let error = load(&with_file(&path), &Env::from_pairs(&[]))
            .expect_err("refused")
            .to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
}

#[test]
fn a_bad_fee_rule_or_p2p_setting_names_the_key() {
    assert_eq!(
        error_in_file("[fees.p2p]\npercent_bps = 20000\n"),
        "FILE: fees.p2p.percent_bps: basis points from 0 to 10000 (100 %)"
    );
    assert_eq!(
        error_in_file("[fees.p2p]\nminimum = 500\nmaximum = 100\n"),
        "FILE: fees.p2p.maximum: at least the minimum"
    );
    assert_eq!(
        error_in_file("[p2p]\nexempt_payment_max = 100000\n"),
        "FILE: p2p.exempt_payment_max: from 0 to below step_up_threshold"
    );
    assert!(error_in_file("[fees.p2p]\npercent = 1\n").contains("unknown key `percent`"));
    assert!(error_in_file("[fees.remittance]\nfixed = 1\n").contains("unknown key `remittance`"));
}

#[test]
fn smtp_needs_a_sender_and_keeps_its_password_out_of_the_output() {
    assert_eq!(
        error(
            &Flags::default(),
            &[("COFFER_SMTP_HOST", "smtp.bank.example")]
        ),
        "smtp.host is set (from COFFER_SMTP_HOST) but smtp.from is not: set both or neither"
    );
    assert!(error(
        &Flags::default(),
        &[
            ("COFFER_SMTP_HOST", "smtp.bank.example"),
            ("COFFER_SMTP_FROM", "Coffer <x@bank.example>"),
            ("COFFER_SMTP_TLS", "ssl")
        ]
    )
    .starts_with("smtp.tls = \"ssl\" (from COFFER_SMTP_TLS)"));
    let dir = dir();
    let secret = write(dir.path(), "smtp-password", "hunter2-relay\n");
    let config = load(
        &Flags::default(),
        &Env::from_pairs(&[
            ("COFFER_SMTP_HOST", "smtp.bank.example"),
            ("COFFER_SMTP_FROM", "Coffer <no-reply@bank.example>"),
            ("COFFER_SMTP_USERNAME", "coffer"),
            ("COFFER_SMTP_PASSWORD_FILE", &secret.display().to_string()),
        ]),
    )
    .expect("config");
    let smtp = config.smtp.as_ref().expect("smtp");
    assert_eq!(smtp.settings.port, 587);
    assert_eq!(smtp.settings.tls, coffer_notify::smtp::SmtpTls::StartTls);
    assert_eq!(
        smtp.settings.password.as_ref().map(|p| p.expose().clone()),
        Some("hunter2-relay".to_string())
    );
    let rendered = render(&config);
    assert!(rendered.contains("[smtp]") && rendered.contains("password_file"));
    assert!(!rendered.contains("hunter2") && !format!("{config:?}").contains("hunter2"));
}

#[test]
fn top_ups_count_against_limits_for_the_tiers_the_file_or_the_environment_names() {
    let config = load(&Flags::default(), &Env::from_pairs(&[])).expect("config");
    assert_eq!(config.limits.top_ups_limited.value, [false; 3]);
    let dir = dir();
    let file = write(
        dir.path(),
        "coffer.toml",
        "[limits]\ntop_ups_limited_tiers = [0, 1]\n",
    );
    let config = load(&with_file(&file), &Env::from_pairs(&[])).expect("config");
    assert_eq!(config.limits.top_ups_limited.value, [true, true, false]);
    assert!(render(&config).contains("top_ups_limited_tiers = [0, 1]"));
    let env = Env::from_pairs(&[("COFFER_LIMITS_TOP_UPS_LIMITED_TIERS", "2")]);
    let config = load(&with_file(&file), &env).expect("config");
    assert_eq!(config.limits.top_ups_limited.value, [false, false, true]);
    assert!(error(
        &Flags::default(),
        &[("COFFER_LIMITS_TOP_UPS_LIMITED_TIERS", "0,3")]
    )
    .starts_with("limits.top_ups_limited_tiers = \"0,3\" (from COFFER_LIMITS_TOP_UPS_LIMITED_TIERS): expected KYC tiers"));
}
