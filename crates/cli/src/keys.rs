//! `coffer keys`: data-key rotation, re-encryption of stored values and
//! master-key rotation, all while `coffer serve` keeps running.
//!
//! The procedures, step by step, are in docs/SECURITY.md ("Key
//! management"). Every change is in the audit log with the operator's login
//! name as the actor.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use coffer_core::{Clock, Timestamp};
use coffer_store::sql::SqlStore;
use coffer_vault::{
    LocalMasterKey, Requester, Vault, KEY_ACTIVATION_DELAY_SECONDS, KEY_REFRESH_SECONDS,
};

use crate::config::Config;
use crate::{progress, ConfigArgs};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Show the data keys, the master key each is wrapped by, and how many
    /// stored values each key encrypts.
    #[command(after_help = "Examples:\n  \
        coffer keys status\n  \
        coffer keys status --config /etc/coffer/coffer.toml")]
    Status {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Start a new data key for new writes (earlier keys stay for reading).
    ///
    /// Running services learn the key within 30 s and switch their writes to
    /// it 60 s after this command, so none writes a value another cannot read
    /// yet. Then move the stored values with `coffer keys reencrypt`.
    #[command(after_help = "Examples:\n  \
        coffer keys rotate --config /etc/coffer/coffer.toml\n  \
        coffer keys rotate --offline          # no `coffer serve` runs: active at once")]
    Rotate {
        #[command(flatten)]
        offline: Offline,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Re-encrypt every stored value that is under an older data key with the
    /// active one, row by row, while the service runs.
    ///
    /// Waits until every running service writes with the active key, then
    /// walks each encrypted column in small batches; each row is rewritten in
    /// its own transaction only if it still holds what was read, so a
    /// concurrent change is never lost. Safe to interrupt: run it again to
    /// resume. Exits 0 when no value is left under an older key, 1 when some
    /// are (run it again).
    #[command(after_help = "Shows a progress bar on a terminal.\n\n\
        Examples:\n  \
        coffer keys reencrypt --config /etc/coffer/coffer.toml\n  \
        coffer keys reencrypt --offline       # no `coffer serve` runs: do not wait")]
    Reencrypt {
        #[command(flatten)]
        offline: Offline,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write a new random master key to a new file (mode 0600).
    ///
    /// Prints the key's id, never the key. The file is not overwritten if it
    /// exists. Then configure it as vault.master_key_file with the current
    /// key as vault.previous_master_key_file, restart, and run
    /// `coffer keys rewrap`.
    #[command(after_help = "Examples:\n  \
        coffer keys new-master-key --out /etc/coffer/keys/master-2027.key")]
    NewMasterKey {
        /// Where to write the key (must not exist).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Re-wrap every data key under the configured master key, unwrapping
    /// with vault.previous_master_key_file; afterwards the previous master
    /// key is no longer needed.
    #[command(after_help = "Examples:\n  \
        COFFER_VAULT_MASTER_KEY_FILE=/etc/coffer/keys/master-2027.key \\\n  \
        COFFER_VAULT_PREVIOUS_MASTER_KEY_FILE=/etc/coffer/keys/master-2026.key \\\n  \
        coffer keys rewrap --config /etc/coffer/coffer.toml")]
    Rewrap {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Args)]
pub struct Offline {
    /// No `coffer serve` runs against this database: nothing to wait for.
    #[arg(long)]
    offline: bool,
}

impl Keys {
    /// The configuration flags of the command, if it reads the configuration.
    pub fn config(&self) -> Option<&ConfigArgs> {
        match self {
            Keys::Status { config }
            | Keys::Rotate { config, .. }
            | Keys::Reencrypt { config, .. }
            | Keys::Rewrap { config } => Some(config),
            Keys::NewMasterKey { .. } => None,
        }
    }
}

pub fn new_master_key(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    if out.exists() {
        anyhow::bail!("{}: exists; refusing to overwrite a key", out.display());
    }
    let key = LocalMasterKey::create(out).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("master key {} written to {}", key.id(), out.display());
    println!("Back it up apart from the database. Then set vault.master_key_file to it,");
    println!(
        "vault.previous_master_key_file to the current key, restart, and run `coffer keys rewrap`."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: &Keys, config: &Config) -> anyhow::Result<ExitCode> {
    let clock = coffer_app::system_clock();
    let provider = config.vault.key_provider()?;
    let database = &config.database.url.value;
    let sql = Arc::new(SqlStore::open(database, 2)?);
    let vault = Vault::open(provider, sql, clock.now().as_nanos())
        .map_err(|e| anyhow::anyhow!("vault: {e}"))?;
    let actor = operator();
    let requester = Requester {
        actor: &actor,
        ip: "cli",
    };
    match command {
        Keys::Status { .. } => status(&vault),
        Keys::Rotate { offline, .. } => {
            let now = clock.now().as_nanos();
            let delay = if offline.offline {
                0
            } else {
                KEY_ACTIVATION_DELAY_SECONDS * NANOS_PER_SECOND
            };
            let id = vault
                .rotate(now, now + delay, requester)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "data key {id} created; new writes use it from {}",
                Timestamp::from_nanos(now + delay).to_rfc3339()
            );
            println!("Then run `coffer keys reencrypt` to move the stored values to it.");
            Ok(ExitCode::SUCCESS)
        }
        Keys::Reencrypt { offline, .. } => {
            reencrypt(&vault, clock.as_ref(), offline.offline, requester)
        }
        Keys::Rewrap { .. } => {
            let report = vault
                .rewrap(clock.now().as_nanos(), requester)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{} data keys re-wrapped under master key {}",
                report.rewrapped, report.master_key_id
            );
            if report.previous.is_empty() {
                println!("No data key was wrapped by another master key.");
            } else {
                println!(
                    "Master key(s) {} no longer needed: remove vault.previous_master_key_file, restart, then destroy the old key file.",
                    report.previous.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Keys::NewMasterKey { out } => new_master_key(out),
    }
}

/// The person at the console, as the audit log names them.
fn operator() -> String {
    let login = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{login}")
}

fn status(vault: &Vault) -> anyhow::Result<ExitCode> {
    let keys = vault.data_keys().map_err(|e| anyhow::anyhow!("{e}"))?;
    let columns = coffer_api::encrypted_columns();
    let census = vault.census(&columns).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("data keys (oldest first):");
    for key in &keys {
        let role = if key.index {
            "blind-index key (not rotated)".to_string()
        } else if key.active {
            "active: new writes".to_string()
        } else if key.retired_at.is_some() {
            "retired: read only".to_string()
        } else {
            format!(
                "pending: new writes from {}",
                Timestamp::from_nanos(key.active_from).to_rfc3339()
            )
        };
        let values = census.get(&key.id).copied().unwrap_or(0);
        println!(
            "  {:<22} wrapped by {:<20} {:>9} values  {role}",
            key.id, key.master_key_id, values
        );
    }
    for (id, count) in census
        .iter()
        .filter(|(id, _)| !keys.iter().any(|k| &k.id == *id))
    {
        println!("  {id:<22} NOT IN data_keys        {count:>9} values  unreadable");
    }
    let mut masters: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
    masters.sort_unstable();
    masters.dedup();
    println!("master keys in use: {}", masters.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn reencrypt(
    vault: &Vault,
    clock: &dyn Clock,
    offline: bool,
    requester: Requester<'_>,
) -> anyhow::Result<ExitCode> {
    if !offline {
        // Every running service must write with the newest key before the
        // walk, or values written behind it would stay under an older key.
        let newest = vault
            .data_keys()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .filter(|k| !k.index)
            .map(|k| k.active_from)
            .max()
            .unwrap_or(0);
        let ready = newest + KEY_REFRESH_SECONDS * NANOS_PER_SECOND;
        let wait = ready - clock.now().as_nanos();
        if wait > 0 {
            println!(
                "waiting {} s until every running service writes with the newest data key…",
                wait / NANOS_PER_SECOND + 1
            );
            std::thread::sleep(std::time::Duration::from_nanos(
                u64::try_from(wait).unwrap_or(0),
            ));
        }
    }
    let columns = coffer_api::encrypted_columns();
    let total = vault
        .count_rows(&columns)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bar = progress::bar(total, "re-encrypting");
    let report = vault
        .reencrypt(&columns, clock.now().as_nanos(), requester, &mut |p| {
            bar.set_position(p.scanned);
            ControlFlow::Continue(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    println!(
        "{} of {} stored values re-encrypted with data key {} ({} changed meanwhile and were read again)",
        report.reencrypted, report.scanned, report.target, report.conflicts
    );
    if report.remaining == 0 {
        println!("OK: no stored value is under an older data key");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} values are still under an older data key (written meanwhile by a service that had not switched yet); run `coffer keys reencrypt` again",
            report.remaining
        );
        Ok(ExitCode::from(1))
    }
}
