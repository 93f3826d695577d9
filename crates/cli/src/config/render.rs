//! `coffer config check`'s output: the effective configuration as TOML, each
//! value followed by the layer it came from, secrets redacted.

use std::fmt::Write as _;

use super::{Config, Origin};

/// One `key = value  # origin` line.
struct Line<'a> {
    key: &'static str,
    value: String,
    origin: &'a Origin,
}

fn line<'a>(key: &'static str, value: String, origin: &'a Origin) -> Line<'a> {
    Line { key, value, origin }
}

/// The configuration as a TOML document (so it can seed a config file), with
/// `# origin` after each value. The database URL goes through
/// `Database::redacted`, so a password never reaches the terminal.
pub fn render(config: &Config) -> String {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let path = |path: &std::path::Path| quoted(&path.display().to_string());
    let mut sections: Vec<(&str, Vec<Line>)> = Vec::new();

    let server = &config.server;
    let mut server_lines = vec![line(
        "listen",
        quoted(&server.listen.value.to_string()),
        &server.listen.origin,
    )];
    if let Some(tls) = &server.tls {
        server_lines.push(line("tls_cert", path(&tls.cert.value), &tls.cert.origin));
        server_lines.push(line("tls_key", path(&tls.key.value), &tls.key.origin));
    }
    server_lines.push(line(
        "rate_limit_per_second",
        server.rate_limit_per_second.value.to_string(),
        &server.rate_limit_per_second.origin,
    ));
    server_lines.push(line(
        "auth_rate_limit_per_second",
        server.auth_rate_limit_per_second.value.to_string(),
        &server.auth_rate_limit_per_second.origin,
    ));
    sections.push(("server", server_lines));

    let database = &config.database;
    sections.push((
        "database",
        vec![
            line(
                "url",
                quoted(&database.url.value.redacted()),
                &database.url.origin,
            ),
            line(
                "data_dir",
                path(&database.data_dir.value),
                &database.data_dir.origin,
            ),
            line(
                "reader_connections",
                database.reader_connections.value.to_string(),
                &database.reader_connections.origin,
            ),
        ],
    ));
    sections.push((
        "log",
        vec![
            line(
                "format",
                quoted(config.log.format.value.as_str()),
                &config.log.format.origin,
            ),
            line(
                "filter",
                quoted(&config.log.filter.value),
                &config.log.filter.origin,
            ),
        ],
    ));
    let retention = &config.idempotency.retention_hours;
    sections.push((
        "idempotency",
        vec![line(
            "retention_hours",
            retention.value.to_string(),
            &retention.origin,
        )],
    ));

    let passkeys = &config.passkeys;
    sections.push((
        "passkeys",
        vec![
            line(
                "rp_id",
                quoted(&passkeys.rp_id.value),
                &passkeys.rp_id.origin,
            ),
            line(
                "origin",
                quoted(&passkeys.origin.value),
                &passkeys.origin.origin,
            ),
        ],
    ));

    // The default master key file is created when missing, a configured one
    // must exist: shown as a comment, so the output stays a config file that
    // loads (also before the first start).
    let vault = &config.vault;
    let mut vault_lines = Vec::new();
    if vault.master_key_file.origin != Origin::Default {
        vault_lines.push(line(
            "master_key_file",
            path(&vault.master_key_file.value),
            &vault.master_key_file.origin,
        ));
    }
    if let Some(previous) = &vault.previous_master_key_file {
        vault_lines.push(line(
            "previous_master_key_file",
            path(&previous.value),
            &previous.origin,
        ));
    }
    sections.push(("vault", vault_lines));

    let compliance = &config.compliance;
    let mut compliance_lines = Vec::new();
    if let Some(file) = &compliance.watchlist_file {
        compliance_lines.push(line("watchlist_file", path(&file.value), &file.origin));
    }
    compliance_lines.push(line(
        "match_threshold_bps",
        compliance.match_threshold_bps.value.to_string(),
        &compliance.match_threshold_bps.origin,
    ));
    compliance_lines.push(line(
        "large_value_threshold_cny",
        compliance.large_value_threshold_cny.value.to_string(),
        &compliance.large_value_threshold_cny.origin,
    ));
    sections.push(("compliance", compliance_lines));
    let limited = &config.limits.top_ups_limited;
    let tiers: Vec<String> = (0..3)
        .filter(|&t| limited.value[t])
        .map(|t| t.to_string())
        .collect();
    sections.push((
        "limits",
        vec![line(
            "top_ups_limited_tiers",
            format!("[{}]", tiers.join(", ")),
            &limited.origin,
        )],
    ));
    // E-mail notifications: the relay when one is configured. The password
    // is never shown, only where it was read from.
    if let Some(smtp) = &config.smtp {
        let settings = &smtp.settings;
        let mut lines = vec![
            line("host", quoted(&settings.host), &smtp.host),
            line("port", settings.port.to_string(), &smtp.host),
            line("tls", quoted(settings.tls.as_str()), &smtp.host),
            line("from", quoted(&settings.from), &smtp.host),
        ];
        if let (Some(user), Some(origin)) = (&settings.username, &smtp.password) {
            lines.push(line("username", quoted(user), &smtp.host));
            if let Origin::SecretFile { path: file, .. } = origin {
                lines.push(line("password_file", path(file), origin));
            }
        }
        sections.push(("smtp", lines));
    }

    // The P2P policy and each operation's fee rule.
    let payments = &config.payments;
    let policy = &payments.value;
    let origin = &payments.origin;
    sections.push((
        "p2p",
        vec![
            line(
                "quote_ttl_seconds",
                policy.quote_ttl_seconds.to_string(),
                origin,
            ),
            line(
                "step_up_threshold",
                policy.step_up_threshold.to_string(),
                origin,
            ),
            line(
                "exempt_payment_max",
                policy.exempt_payment_max.to_string(),
                origin,
            ),
            line(
                "exempt_daily_total_max",
                policy.exempt_daily_total_max.to_string(),
                origin,
            ),
            line(
                "exempt_daily_count_max",
                policy.exempt_daily_count_max.to_string(),
                origin,
            ),
            line(
                "lookups_per_hour_max",
                policy.lookups_per_hour_max.to_string(),
                origin,
            ),
            line(
                "lookups_per_ip_per_hour_max",
                policy.lookups_per_ip_per_hour_max.to_string(),
                origin,
            ),
            line(
                "request_ttl_seconds",
                policy.request_ttl_seconds.to_string(),
                origin,
            ),
        ],
    ));
    for operation in coffer_payments::FeeOperation::ALL {
        let rule = policy.fees.rule(operation);
        let section = match operation {
            coffer_payments::FeeOperation::P2p => "fees.p2p",
            coffer_payments::FeeOperation::Withdrawal => "fees.withdrawal",
            coffer_payments::FeeOperation::MerchantPayment => "fees.merchant_payment",
            coffer_payments::FeeOperation::BillPayment => "fees.bill_payment",
        };
        let mut lines = vec![
            line("fixed", rule.fixed.to_string(), origin),
            line("percent_bps", rule.percent_bps.to_string(), origin),
            line("minimum", rule.minimum.to_string(), origin),
        ];
        if let Some(maximum) = rule.maximum {
            lines.push(line("maximum", maximum.to_string(), origin));
        }
        lines.push(line(
            "free_per_month",
            rule.free_per_month.to_string(),
            origin,
        ));
        lines.push(line("first_free", rule.first_free.to_string(), origin));
        sections.push((section, lines));
    }

    let width = sections
        .iter()
        .flat_map(|(_, lines)| lines)
        .map(|line| line.key.len() + line.value.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "# The effective configuration, secrets redacted; after each value, where it came from.\n",
    );
    for (name, lines) in sections {
        let _ = writeln!(out, "\n[{name}]");
        for Line { key, value, origin } in lines {
            let assignment = format!("{key} = {value}");
            let _ = writeln!(out, "{assignment:<width$}  # {origin}");
        }
        if name == "server" && config.server.tls.is_none() {
            let _ = writeln!(out, "# no tls_cert / tls_key: plain HTTP");
        }
        if name == "vault" && vault.master_key_file.origin == Origin::Default {
            let _ = writeln!(
                out,
                "# master_key_file = {}  # default (created when missing)",
                path(&vault.master_key_file.value)
            );
        }
    }
    for warning in &config.warnings {
        let _ = writeln!(out, "\n# warning: {warning}");
    }
    out
}
