//! The outbox on both backends: written with its transaction or not at all,
//! delivered once, body erased after delivery, retried with back-off, then
//! dead-lettered.

use std::sync::Arc;

use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_notify::{
    enqueue, entries, Channel, Dispatcher, Message, SimulatedTransport, Transport, ATTEMPTS_MAX,
};
use coffer_store::sql::SqlStore;
use coffer_store::StoreError;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

fn message(to: &str, code: &str) -> Message<'static> {
    Message {
        channel: Channel::Sms,
        recipient: Secret::new(to.to_string()),
        recipient_masked: "+86******0000".into(),
        customer_id: Some("c-1"),
        template: "registration_code",
        subject: "Coffer".into(),
        body: Secret::new(format!(
            "Your Coffer code is {code}. It expires in 5 minutes."
        )),
    }
}

#[test]
fn outbox_delivers_committed_messages_only_and_retries_failures() {
    for db in TestDatabase::both() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
            1_800_000_000_000_000_000,
        )));
        let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
        let vault = Arc::new(
            Vault::open(
                Arc::new(LocalMasterKey::from_bytes([1; 32])),
                sql.clone(),
                0,
            )
            .expect("vault"),
        );
        let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
        let dispatcher = Dispatcher::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
            vec![sms.clone() as Arc<dyn Transport>],
        );
        let now = 1_800_000_000_000_000_000;
        // Rolled back: never sent.
        let rolled_back: Result<(), StoreError> = sql.transaction(|tx| {
            enqueue(tx, &vault, &message("+8613800000001", "111111"), now).expect("enqueue");
            Err(StoreError::Corrupt("the event failed".into()))
        });
        assert!(rolled_back.is_err());
        // Committed: sent once, and the code leaves the database.
        sql.transaction(|tx| -> Result<(), StoreError> {
            enqueue(tx, &vault, &message("+8613800000002", "222222"), now).expect("enqueue");
            Ok(())
        })
        .expect("commit");
        assert_eq!(dispatcher.run_once().expect("run"), 1);
        assert_eq!(dispatcher.run_once().expect("run"), 0);
        assert_eq!(sms.last_code("+8613800000002").as_deref(), Some("222222"));
        assert!(sms.to("+8613800000001").is_empty());
        let sent = sql
            .run(|db| Ok(entries(db, Some("c-1"))))
            .expect("entries")
            .expect("entries");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].state.as_str(), sent[0].body_erased),
            ("sent", true)
        );

        // An unreachable recipient: retried with growing back-off, then dead.
        sql.transaction(|tx| -> Result<(), StoreError> {
            enqueue(tx, &vault, &message("+8613810000000000", "333333"), now).expect("enqueue");
            Ok(())
        })
        .expect("commit");
        for attempt in 1..=ATTEMPTS_MAX {
            assert_eq!(dispatcher.run_once().expect("run"), 0);
            // Not due again until its back-off has passed.
            dispatcher.run_once().expect("run");
            let failing = sql
                .run(|db| Ok(entries(db, Some("c-1"))))
                .expect("e")
                .expect("e");
            assert_eq!(failing[1].attempts, attempt, "attempt {attempt}");
            clock.advance_millis(3_600_000);
        }
        let dead = sql
            .run(|db| Ok(entries(db, Some("c-1"))))
            .expect("e")
            .expect("e");
        assert_eq!(dead[1].state, "dead");
        assert!(dead[1]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("unreachable"));
        assert_eq!(sms.count(), 1);
    }
}
