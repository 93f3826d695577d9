//! Alerts on both backends: fan-out to the inbox and the contact under a
//! notification key (once however often the event is derived), preferences
//! (security always goes out, marketing needs consent), language, the
//! inbox's cursor and read state, dead letters re-queued by staff (audited),
//! and e-mail through a real SMTP server (aiosmtpd) with nothing secret in it.

use std::sync::Arc;
use std::time::Duration;

use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_notify::alerts::{self, Alert, Bilingual, Contact};
use coffer_notify::preferences::{self, Category, Language, Update};
use coffer_notify::smtp::{SmtpSettings, SmtpTls, SmtpTransport};
use coffer_notify::{
    attempts, dead_letters, entries, inbox, requeue, Channel, Dispatcher, NotifyError, RetryPolicy,
    SimulatedTransport, Transport,
};
use coffer_store::sql::SqlStore;
use coffer_testkit::smtp_sink::SmtpSink;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

const NOW: i64 = 1_800_000_000_000_000_000;

struct World {
    _db: TestDatabase,
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<ManualClock>,
}

fn world(db: TestDatabase) -> World {
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(NOW)));
    let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([7; 32])),
            sql.clone(),
            0,
        )
        .expect("vault"),
    );
    World {
        _db: db,
        sql,
        vault,
        clock,
    }
}

fn received(amount: &str) -> Bilingual {
    Bilingual::new(
        "Money received",
        format!("You received CNY {amount} from Z**."),
        "收款通知",
        format!("您收到 Z** 转来的 CNY {amount}。"),
    )
}

fn email(address: &str) -> Contact {
    Contact {
        channel: Channel::Email,
        address: Secret::new(address.to_string()),
        masked: "a***@example.com".into(),
    }
}

fn send(w: &World, customer: &str, key: &str, category: Category, contact: &Contact) -> usize {
    w.sql
        .transaction(|db| -> Result<usize, NotifyError> {
            alerts::send(
                db,
                &w.vault,
                &Alert {
                    customer_id: customer,
                    key,
                    category,
                    template: "p2p_received",
                    text: received("12.50"),
                },
                Some(contact),
                NOW,
            )
        })
        .expect("send")
}

#[test]
fn alerts_fan_out_once_per_key_and_follow_preferences() {
    for db in TestDatabase::both() {
        let w = world(db);
        let contact = email("alice@example.com");
        // Inbox and e-mail; the same event again writes nothing.
        assert_eq!(
            send(
                &w,
                "c-1",
                "p2p:pay_1:received",
                Category::PaymentReceived,
                &contact
            ),
            2
        );
        assert_eq!(
            send(
                &w,
                "c-1",
                "p2p:pay_1:received",
                Category::PaymentReceived,
                &contact
            ),
            0
        );
        // Switched off by e-mail: inbox only. Security ignores the switch.
        w.sql
            .transaction(|db| {
                preferences::update(
                    db,
                    "c-1",
                    &Update {
                        language: Some(Language::ZhCn),
                        preferences: vec![(Category::PaymentReceived, "email".into(), false)],
                    },
                    NOW,
                )
            })
            .expect("update");
        assert_eq!(
            send(
                &w,
                "c-1",
                "p2p:pay_2:received",
                Category::PaymentReceived,
                &contact
            ),
            1
        );
        assert_eq!(send(&w, "c-1", "sec:1", Category::Security, &contact), 2);
        // Security cannot be switched off; an unknown channel is refused.
        for bad in [
            (Category::Security, "email"),
            (Category::PaymentSent, "pigeon"),
        ] {
            let refused = w.sql.transaction(|db| {
                preferences::update(
                    db,
                    "c-1",
                    &Update {
                        language: None,
                        preferences: vec![(bad.0, bad.1.into(), false)],
                    },
                    NOW,
                )
            });
            assert!(matches!(refused, Err(NotifyError::Invalid(..))), "{bad:?}");
        }
        // Marketing: nothing without consent, even with the channels on.
        w.sql
            .transaction(|db| {
                preferences::update(
                    db,
                    "c-1",
                    &Update {
                        language: None,
                        preferences: vec![(Category::Marketing, "inbox".into(), true)],
                    },
                    NOW,
                )
            })
            .expect("update");
        assert_eq!(send(&w, "c-1", "mkt:1", Category::Marketing, &contact), 0);
        w.sql
            .transaction(|db| preferences::set_marketing_consent(db, "c-1", true, "app", NOW))
            .expect("consent");
        assert_eq!(send(&w, "c-1", "mkt:2", Category::Marketing, &contact), 2);
        let settings = w
            .sql
            .transaction(|db| preferences::settings(db, "c-1"))
            .expect("settings");
        assert!(settings.marketing_opt_in);
        assert_eq!(settings.marketing_source.as_deref(), Some("app"));
        assert_eq!(settings.language, Language::ZhCn);

        // The inbox: newest first, in the customer's language, paged by cursor.
        let page = w
            .sql
            .transaction(|db| inbox::list(db, &w.vault, "c-1", None, 2, false))
            .expect("list");
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.unread, 4);
        assert_eq!(page.items[0].template, "p2p_received");
        assert!(page.items[1].body.contains("您收到"), "{:?}", page.items[1]);
        let rest = w
            .sql
            .transaction(|db| inbox::list(db, &w.vault, "c-1", page.next_cursor, 10, false))
            .expect("list");
        assert_eq!(rest.items.len(), 2);
        assert_eq!(rest.next_cursor, None);
        let first = rest.items[1].id;
        w.sql
            .transaction(|db| inbox::mark_read(db, "c-1", first, NOW))
            .expect("read");
        // Another customer's item is not found.
        let theirs = w
            .sql
            .transaction(|db| inbox::mark_read(db, "c-2", first, NOW));
        assert!(matches!(theirs, Err(NotifyError::NotFound(_))));
        assert_eq!(
            w.sql
                .transaction(|db| inbox::unread_count(db, "c-1"))
                .expect("count"),
            3
        );
        assert_eq!(
            w.sql
                .transaction(|db| inbox::mark_all_read(db, "c-1", NOW))
                .expect("all"),
            3
        );
        let unread = w
            .sql
            .transaction(|db| inbox::list(db, &w.vault, "c-1", None, 10, true))
            .expect("list");
        assert!(unread.items.is_empty());

        // A card number never reaches an alert.
        let refused = w.sql.transaction(|db| {
            alerts::send(
                db,
                &w.vault,
                &Alert {
                    customer_id: "c-1",
                    key: "card:1",
                    category: Category::Security,
                    template: "card_linked",
                    text: Bilingual::new("Card", "Card 4111 1111 1111 1111 linked", "卡", "卡"),
                },
                None,
                NOW,
            )
        });
        assert!(matches!(refused, Err(NotifyError::Invalid(..))));
    }
}

#[test]
fn dead_letters_are_listed_and_requeued_by_staff_with_an_audit_record() {
    for db in TestDatabase::both() {
        let w = world(db);
        let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
        let dispatcher = Dispatcher::new(
            w.sql.clone(),
            w.vault.clone(),
            w.clock.clone(),
            vec![sms.clone() as Arc<dyn Transport>],
        )
        .with_policy(RetryPolicy {
            attempts_max: 2,
            base_seconds: 1,
            cap_seconds: 60,
        });
        let phone = Contact {
            channel: Channel::Sms,
            address: Secret::new("+8613810000000000".into()),
            masked: "+86******0000".into(),
        };
        send(&w, "c-1", "sec:2", Category::Security, &phone);
        for _ in 0..2 {
            dispatcher.run_once().expect("run");
            w.clock.advance_millis(120_000);
        }
        let dead = w
            .sql
            .transaction(|db| dead_letters(db, 0, 10))
            .expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 2);
        let log = w
            .sql
            .transaction(|db| attempts(db, dead[0].seq))
            .expect("attempts");
        assert_eq!(log.len(), 2);
        assert!(log.iter().all(|a| a.outcome == "failed"));
        // Re-queued (audited); a repeat changes nothing; an unknown one is not found.
        assert!(w
            .sql
            .transaction(|db| requeue(db, dead[0].seq, "staff:s-1", "10.0.0.1", NOW))
            .expect("requeue"));
        assert!(!w
            .sql
            .transaction(|db| requeue(db, dead[0].seq, "staff:s-1", "10.0.0.1", NOW))
            .expect("requeue"));
        assert!(matches!(
            w.sql
                .transaction(|db| requeue(db, 999_999, "staff:s-1", "", NOW)),
            Err(NotifyError::NotFound(_))
        ));
        let audit = w
            .sql
            .run(|db| {
                Ok(coffer_audit::entries(
                    db,
                    &coffer_audit::Filter {
                        limit: 10,
                        ..coffer_audit::Filter::default()
                    },
                ))
            })
            .expect("audit")
            .expect("audit");
        assert!(audit
            .iter()
            .any(|r| r.action == "notification_requeued" && r.actor == "staff:s-1"));
        let pending = w
            .sql
            .run(|db| Ok(entries(db, Some("c-1"))))
            .expect("e")
            .expect("e");
        let sms_row = pending.iter().find(|e| e.channel == "sms").expect("sms");
        assert_eq!((sms_row.state.as_str(), sms_row.attempts), ("pending", 0));
    }
}

#[test]
fn email_goes_through_a_real_smtp_server_with_a_keyed_message_id_and_no_secrets() {
    let mut sink = SmtpSink::start();
    for db in TestDatabase::both() {
        let w = world(db);
        let smtp = SmtpTransport::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Coffer <no-reply@bank.example>".into(),
            timeout: Duration::from_secs(10),
        })
        .expect("smtp");
        let dispatcher = Dispatcher::new(
            w.sql.clone(),
            w.vault.clone(),
            w.clock.clone(),
            vec![Arc::new(smtp) as Arc<dyn Transport>],
        );
        let before = sink.messages().len();
        let to = format!("bob-{}@example.com", w.sql.backend_name());
        send(
            &w,
            "c-9",
            "p2p:pay_9:received",
            Category::PaymentReceived,
            &email(&to),
        );
        assert_eq!(dispatcher.run_once().expect("run"), 1);
        let mail = sink.wait_for(before + 1);
        let mail = mail
            .iter()
            .find(|m| m.header("to").is_some_and(|t| t.contains(&to)))
            .expect("the mail to this recipient");
        assert_eq!(mail.header("subject"), Some("Money received"));
        assert!(
            mail.body.contains("You received CNY 12.50 from Z**."),
            "{}",
            mail.raw
        );
        assert_eq!(
            mail.header("message-id"),
            Some("<p2p.pay_9.received.email@notifications.coffer>")
        );
        assert!(mail
            .header("from")
            .is_some_and(|f| f.contains("no-reply@bank.example")));
        // Delivered: the stored copy of the body is erased.
        let rows = w
            .sql
            .run(|db| Ok(entries(db, Some("c-9"))))
            .expect("e")
            .expect("e");
        let row = rows.iter().find(|e| e.channel == "email").expect("row");
        assert_eq!((row.state.as_str(), row.body_erased), ("sent", true));

        // The relay down: the message waits, then goes when it is back.
        sink.stop();
        send(
            &w,
            "c-9",
            "p2p:pay_10:received",
            Category::PaymentReceived,
            &email(&to),
        );
        assert_eq!(dispatcher.run_once().expect("run"), 0);
        let rows = w
            .sql
            .run(|db| Ok(entries(db, Some("c-9"))))
            .expect("e")
            .expect("e");
        let waiting = rows
            .iter()
            .rev()
            .find(|e| e.channel == "email")
            .expect("row");
        assert_eq!(waiting.state, "pending");
        assert!(waiting
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("smtp:") && !e.contains(&to)));
        sink.restart();
        w.clock.advance_millis(5_000);
        assert_eq!(dispatcher.run_once().expect("run"), 1);
        sink.wait_for(before + 2);
    }
}

#[test]
fn recipients_and_texts_are_encrypted_at_rest() {
    let db = TestDatabase::sqlite();
    let path = match &db.database {
        coffer_store::Database::Sqlite(path) => path.clone(),
        coffer_store::Database::Postgres(_) => unreachable!(),
    };
    let w = world(db);
    send(
        &w,
        "c-1",
        "p2p:pay_secret:received",
        Category::PaymentReceived,
        &email("carol.secret@example.com"),
    );
    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        stored.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
    }
    for needle in ["carol.secret@example.com", "You received CNY", "您收到"] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is stored in clear"
        );
    }
}
