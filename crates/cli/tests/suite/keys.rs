//! `coffer keys`, the real binary, on both backends: a customer and a staff
//! user are stored encrypted; the data key is rotated and every value moved
//! to the new key; the master key is replaced, the data keys re-wrapped, and
//! the old master key deleted, after which everything still reads, and each
//! step is in the audit log.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use coffer_core::Secret;
use coffer_identity::{Context, PasswordPolicy, Policy, TERMS_VERSION};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_store::Database;
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;

/// Runs `coffer keys …` (or any command): (exit code, stdout and stderr).
fn coffer(args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run coffer");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn url(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        Database::Postgres(url) => url.clone(),
    }
}

/// The number of stored values `keys status` counts under `key`.
fn values_under(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|line| line.trim_start().starts_with(key))
        .and_then(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "values")?;
            words.get(at - 1)?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no line for {key} in:\n{status}"))
}

fn here() -> Context {
    Context {
        ip: "192.0.2.1".into(),
        device: "test".into(),
    }
}

#[test]
fn keys_rotate_reencrypt_and_rewrap_with_the_real_binary() {
    for db in TestDatabase::both() {
        let dir = tempfile::tempdir().expect("dir");
        let data_dir = dir.path().join("data");
        let data = data_dir.to_str().expect("utf-8").to_string();
        let url = url(&db.database);
        let base = ["--db", url.as_str(), "--data-dir", data.as_str()];
        let with = |command: &[&str]| -> Vec<String> {
            command
                .iter()
                .chain(base.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let run = |command: &[&str], env: &[(&str, &Path)]| {
            let args = with(command);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            coffer(&args, env)
        };

        // A staff user (authenticator seed encrypted) made by the binary,
        // which creates the master key file; a customer registered in process.
        let (code, output) = run(
            &[
                "staff",
                "create",
                "--username",
                "li.ming",
                "--name",
                "Li Ming",
                "--roles",
                "support",
            ],
            &[],
        );
        assert_eq!(code, Some(0), "{output}");
        let old_key_file = data_dir.join("master.key");
        let old_master = LocalMasterKey::from_file(&old_key_file).expect("master key");
        let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
        let customer = {
            let services = coffer_api::CustomerServices::open(
                &db.database,
                coffer_app::system_clock(),
                Arc::new(LocalMasterKey::from_file(&old_key_file).expect("key")),
                vec![sms.clone() as Arc<dyn Transport>],
                Policy::default(),
                PasswordPolicy::new(None),
            )
            .expect("services");
            let phone = "+8613911112222";
            let started = services
                .identity
                .start_registration(phone, &here())
                .expect("start");
            services.dispatcher.run_once().expect("dispatch");
            let (customer, _) = services
                .identity
                .complete_registration(
                    &started.registration_id,
                    &Secret::new(sms.last_code(phone).expect("code")),
                    &Secret::new("quiet harbour lights".into()),
                    "王芳",
                    TERMS_VERSION,
                    &here(),
                )
                .expect("register");
            customer.id
        };

        let (code, status) = run(&["keys", "status"], &[]);
        assert_eq!(code, Some(0), "{status}");
        let first_key = status
            .lines()
            .find(|l| l.contains("active: new writes"))
            .and_then(|l| l.split_whitespace().next())
            .expect("active key")
            .to_string();
        let stored = values_under(&status, &first_key);
        // Staff seed, contact, name, the registration's contact, the sent code's recipient.
        assert!(stored >= 5, "{status}");

        // Rotate the data key and move every value to it.
        let (code, output) = run(&["keys", "rotate", "--offline"], &[]);
        assert_eq!(code, Some(0), "{output}");
        let (code, output) = run(&["keys", "reencrypt", "--offline"], &[]);
        assert_eq!(code, Some(0), "{output}");
        assert!(
            output.contains("OK: no stored value is under an older data key"),
            "{output}"
        );
        let (_, status) = run(&["keys", "status"], &[]);
        assert_eq!(values_under(&status, &first_key), 0, "{status}");
        assert!(status.contains("retired: read only"), "{status}");
        let second_key = status
            .lines()
            .find(|l| l.contains("active: new writes"))
            .and_then(|l| l.split_whitespace().next())
            .expect("active key")
            .to_string();
        assert_eq!(values_under(&status, &second_key), stored, "{status}");

        // A new master key, never overwriting one.
        let new_key_file = dir.path().join("keys/master-new.key");
        let new_key_arg = new_key_file.to_str().expect("utf-8");
        let (code, output) = coffer(&["keys", "new-master-key", "--out", new_key_arg], &[]);
        assert_eq!(code, Some(0), "{output}");
        let (code, output) = coffer(&["keys", "new-master-key", "--out", new_key_arg], &[]);
        assert_ne!(code, Some(0), "{output}");
        let new_master = LocalMasterKey::from_file(&new_key_file).expect("new key");
        assert!(output.contains("refusing to overwrite"), "{output}");

        // The new key alone opens nothing yet; beside the old one it rewraps.
        let new_only = [("COFFER_VAULT_MASTER_KEY_FILE", new_key_file.as_path())];
        let (code, output) = run(&["keys", "status"], &new_only);
        assert_ne!(code, Some(0), "{output}");
        let ring = [
            ("COFFER_VAULT_MASTER_KEY_FILE", new_key_file.as_path()),
            (
                "COFFER_VAULT_PREVIOUS_MASTER_KEY_FILE",
                old_key_file.as_path(),
            ),
        ];
        let (code, output) = run(&["keys", "rewrap"], &ring);
        assert_eq!(code, Some(0), "{output}");
        assert!(
            output.contains("no longer needed") && output.contains(old_master.id()),
            "{output}"
        );

        // The old master key is gone: everything still opens with the new one.
        std::fs::remove_file(&old_key_file).expect("destroy the old key");
        let (code, status) = run(&["keys", "status"], &new_only);
        assert_eq!(code, Some(0), "{status}");
        assert!(
            status.contains(&format!("master keys in use: {}", new_master.id())),
            "{status}"
        );
        let services = coffer_api::CustomerServices::open(
            &db.database,
            coffer_app::system_clock(),
            Arc::new(LocalMasterKey::from_file(&new_key_file).expect("key")),
            Vec::new(),
            Policy::default(),
            PasswordPolicy::new(None),
        )
        .expect("services with the new master key only");
        let view = services.identity.customer(&customer).expect("customer");
        assert_eq!(view.display_name.expose(), "王芳");

        // Each step is in the audit log, and the chain is intact.
        let sql = SqlStore::open(&db.database, 1).expect("sql");
        let actions: Vec<String> = sql
            .run(|db| {
                db.query(
                    "SELECT action FROM audit_log WHERE action IN ('data_key_rotated', 'values_reencrypted', 'master_key_rewrapped') ORDER BY seq",
                    &[],
                )
            })
            .expect("audit")
            .iter()
            .map(|r| r.text(0).expect("action"))
            .collect();
        assert_eq!(
            actions,
            [
                "data_key_rotated",
                "values_reencrypted",
                "master_key_rewrapped"
            ]
        );
        let (code, output) = run(&["verify"], &new_only);
        assert_eq!(code, Some(0), "{output}");
    }
}

#[test]
fn every_keys_command_has_help_with_examples() {
    for command in ["status", "rotate", "reencrypt", "new-master-key", "rewrap"] {
        let (code, output) = coffer(&["keys", command, "--help"], &[]);
        assert_eq!(code, Some(0), "{output}");
        assert!(output.contains("Examples:"), "keys {command}: {output}");
    }
    let (code, output) = coffer(&["keys", "--help"], &[]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("coffer keys rewrap"), "{output}");
}
