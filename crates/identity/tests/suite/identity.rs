//! Customer identity on both backends, through the service's public API:
//! registration, non-disclosure, codes, passwords, sign-in throttling and
//! lock-out, sessions; and no secret left in the database in clear.

use coffer_app::ManualClock;
use coffer_core::Secret;
use coffer_identity::{
    Context, IdentityError, Method, NewSession, Operation, SignIn, TERMS_VERSION,
};
use coffer_store::Database;
use coffer_testkit::TestDatabase;

use crate::support::world::{world, World};

fn here() -> Context {
    Context {
        ip: "203.0.113.7".into(),
        device: "Test phone".into(),
    }
}

fn secret(text: &str) -> Secret<String> {
    Secret::new(text.to_string())
}

const PHONE: &str = "+8613800138000";

fn session(sign_in: SignIn) -> NewSession {
    match sign_in {
        SignIn::Session(session) => session,
        SignIn::SecondFactor(challenge) => panic!("unexpected second factor {challenge:?}"),
    }
}
const PASSWORD: &str = "correct horse battery";

impl World {
    fn code_for(&self, to: &str) -> String {
        self.dispatcher.run_once().expect("dispatch");
        self.sms.last_code(to).expect("a code was sent")
    }

    fn register(&self, phone: &str) -> (String, Secret<String>) {
        let started = self
            .identity
            .start_registration(phone, &here())
            .expect("start");
        let code = self.code_for(phone);
        let (customer, session) = self
            .identity
            .complete_registration(
                &started.registration_id,
                &secret(&code),
                &secret(PASSWORD),
                "张伟",
                TERMS_VERSION,
                &here(),
            )
            .expect("complete");
        (customer.id, session.token)
    }
}

#[test]
fn registration_sends_a_code_creates_the_customer_and_signs_in() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let started = w
            .identity
            .start_registration("+86 138 0013 8000", &here())
            .expect("start");
        assert_eq!(started.sent_to, "+86*******8000");
        let code = w.code_for(PHONE);
        // A wrong code, a weak password, a missing acceptance: refused, nothing created.
        let complete = |code: &str, password: &str, terms: &str| {
            w.identity.complete_registration(
                &started.registration_id,
                &secret(code),
                &secret(password),
                "张伟",
                terms,
                &here(),
            )
        };
        let wrong = if code == "000000" { "000001" } else { "000000" };
        assert!(matches!(
            complete(wrong, PASSWORD, TERMS_VERSION),
            Err(IdentityError::CodeInvalid)
        ));
        assert!(matches!(
            complete(&code, "password123", TERMS_VERSION),
            Err(IdentityError::WeakPassword(_))
        ));
        assert!(matches!(
            complete(&code, PASSWORD, "2020-01"),
            Err(IdentityError::InvalidField {
                field: "accept_terms",
                ..
            })
        ));
        let (customer, session) = complete(&code, PASSWORD, TERMS_VERSION).expect("complete");
        assert_eq!(customer.display_name.expose(), "张伟");
        assert_eq!((customer.tier, customer.status.as_str()), (0, "active"));
        assert_eq!(customer.contact_masked, "+86*******8000");
        let info = w.identity.authenticate(&session.token).expect("session");
        assert_eq!(info.customer_id, customer.id);
        // The code is single-use.
        assert!(matches!(
            complete(&code, PASSWORD, TERMS_VERSION),
            Err(IdentityError::CodeInvalid)
        ));
    }
}

#[test]
fn registering_a_taken_contact_looks_the_same_and_warns_the_owner() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        w.register(PHONE);
        let messages_before = w.sms.to(PHONE).len();
        let again = w
            .identity
            .start_registration(PHONE, &here())
            .expect("same answer");
        assert!(again.registration_id.starts_with("reg_"));
        assert_eq!(again.sent_to, "+86*******8000");
        w.dispatcher.run_once().expect("dispatch");
        let messages = w.sms.to(PHONE);
        assert_eq!(messages.len(), messages_before + 1);
        assert!(messages[messages.len() - 1]
            .body
            .expose()
            .contains("You already have one"));
        // No code exists that completes it.
        for code in ["000000", "123456", "999999"] {
            assert!(matches!(
                w.identity.complete_registration(
                    &again.registration_id,
                    &secret(code),
                    &secret(PASSWORD),
                    "Mallory",
                    TERMS_VERSION,
                    &here()
                ),
                Err(IdentityError::CodeInvalid)
            ));
        }
    }
}

#[test]
fn codes_expire_and_allow_only_a_few_attempts() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let started = w
            .identity
            .start_registration(PHONE, &here())
            .expect("start");
        let code = w.code_for(PHONE);
        for _ in 0..5 {
            let _ = w.identity.complete_registration(
                &started.registration_id,
                &secret("12345x"),
                &secret(PASSWORD),
                "A",
                TERMS_VERSION,
                &here(),
            );
        }
        assert!(
            matches!(
                w.identity.complete_registration(
                    &started.registration_id,
                    &secret(&code),
                    &secret(PASSWORD),
                    "A",
                    TERMS_VERSION,
                    &here()
                ),
                Err(IdentityError::CodeInvalid)
            ),
            "the right code after five wrong ones"
        );
        let started = w
            .identity
            .start_registration(PHONE, &here())
            .expect("start");
        let code = w.code_for(PHONE);
        w.clock.advance_millis(301_000);
        assert!(
            matches!(
                w.identity.complete_registration(
                    &started.registration_id,
                    &secret(&code),
                    &secret(PASSWORD),
                    "A",
                    TERMS_VERSION,
                    &here()
                ),
                Err(IdentityError::CodeInvalid)
            ),
            "an expired code"
        );
        // Registration requests per contact are limited too.
        let mut throttled = false;
        for _ in 0..5 {
            throttled |= matches!(
                w.identity.start_registration(PHONE, &here()),
                Err(IdentityError::Throttled { .. })
            );
        }
        assert!(throttled);
    }
}

#[test]
fn sign_in_backs_off_locks_alerts_and_never_reveals_existence() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        w.register(PHONE);
        // Unknown contact and wrong password: the same error.
        for contact in ["+8613900139000", PHONE] {
            assert!(matches!(
                w.identity
                    .login(contact, &secret("wrong password"), &here()),
                Err(IdentityError::InvalidCredentials)
            ));
        }
        assert!(w.identity.login(PHONE, &secret(PASSWORD), &here()).is_ok());
        // Failures back off: after the free ones, an immediate retry is refused.
        for _ in 0..3 {
            assert!(matches!(
                w.identity.login(PHONE, &secret("wrong"), &here()),
                Err(IdentityError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            w.identity.login(PHONE, &secret("wrong"), &here()),
            Err(IdentityError::InvalidCredentials)
        ));
        assert!(
            matches!(
                w.identity.login(PHONE, &secret(PASSWORD), &here()),
                Err(IdentityError::Throttled { .. })
            ),
            "even the right password waits out the back-off"
        );
        // Keep failing (waiting out each back-off) until the lock.
        for _ in 0..20 {
            w.clock.advance_millis(600_000);
            match w.identity.login(PHONE, &secret("wrong"), &here()) {
                Err(IdentityError::InvalidCredentials) => {}
                Err(IdentityError::Throttled { .. }) => break,
                other => panic!("unexpected {other:?}"),
            }
            if let Err(IdentityError::Throttled {
                retry_after_seconds,
            }) = w.identity.login(PHONE, &secret(PASSWORD), &here())
            {
                if retry_after_seconds > 600 {
                    break;
                }
            }
        }
        w.dispatcher.run_once().expect("dispatch");
        let alerts: Vec<_> = w
            .sms
            .to(PHONE)
            .into_iter()
            .filter(|m| m.body.expose().contains("locked"))
            .collect();
        assert_eq!(alerts.len(), 1, "one lock-out alert");
        let customer_id = w
            .sql
            .run(|db| db.query_one("SELECT id FROM customers", &[]))
            .and_then(|row| row.text(0))
            .expect("customer");
        let events = w.identity.security_events(&customer_id).expect("events");
        assert!(events.iter().any(|e| e.0 == "locked"), "{events:?}");
        assert!(matches!(
            w.identity.login(PHONE, &secret(PASSWORD), &here()),
            Err(IdentityError::Throttled { .. })
        ));
        w.clock.advance_millis(15 * 60 * 1000 + 1000);
        assert!(
            w.identity.login(PHONE, &secret(PASSWORD), &here()).is_ok(),
            "lock expires"
        );
    }
}

#[test]
fn sessions_expire_and_can_be_revoked_one_by_one_or_everywhere() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (_customer, first) = w.register(PHONE);
        let second = session(
            w.identity
                .login(PHONE, &secret(PASSWORD), &here())
                .expect("login"),
        )
        .token;
        let third = session(
            w.identity
                .login(PHONE, &secret(PASSWORD), &here())
                .expect("login"),
        )
        .token;
        let me = w.identity.authenticate(&first).expect("first");
        let list = w.identity.sessions(&me).expect("list");
        assert_eq!(list.len(), 3);
        assert_eq!(list.iter().filter(|s| s.current).count(), 1);
        let second_info = w.identity.authenticate(&second).expect("second");
        w.identity
            .revoke_session(&me, &second_info.session_id, &here())
            .expect("revoke");
        assert!(matches!(
            w.identity.authenticate(&second),
            Err(IdentityError::Unauthenticated)
        ));
        assert!(matches!(
            w.identity
                .revoke_session(&me, &second_info.session_id, &here()),
            Err(IdentityError::NotFound("session"))
        ));
        // Idle expiry: 30 minutes without use; use slides it.
        w.clock.advance_millis(20 * 60 * 1000);
        w.identity.authenticate(&first).expect("still live");
        w.clock.advance_millis(20 * 60 * 1000);
        w.identity.authenticate(&first).expect("slid");
        assert!(matches!(
            w.identity.authenticate(&third),
            Err(IdentityError::Unauthenticated)
        ));
        // Sign out everywhere.
        let me = w.identity.authenticate(&first).expect("first");
        w.identity.revoke_all_sessions(&me, &here()).expect("all");
        assert!(matches!(
            w.identity.authenticate(&first),
            Err(IdentityError::Unauthenticated)
        ));
        // A malformed or made-up token is simply not a session.
        for token in ["", "cs_", "cs_zz", &format!("cs_{}", "0".repeat(64))] {
            assert!(matches!(
                w.identity.authenticate(&secret(token)),
                Err(IdentityError::Unauthenticated)
            ));
        }
        let events: Vec<String> = w
            .identity
            .security_events(&me.customer_id)
            .expect("events")
            .into_iter()
            .map(|e| e.0)
            .collect();
        for kind in [
            "registered",
            "signed_in",
            "session_revoked",
            "signed_out_everywhere",
        ] {
            assert!(events.iter().any(|e| e == kind), "{kind} in {events:?}");
        }
    }
}

#[test]
fn security_events_and_failed_sign_ins_go_to_the_audit_log() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (customer_id, token) = w.register(PHONE);
        for contact in ["+8613900139000", PHONE] {
            assert!(w
                .identity
                .login(contact, &secret("hunter2 hunter2"), &here())
                .is_err());
        }
        let me = w.identity.authenticate(&token).expect("me");
        w.identity
            .revoke_session(&me, &me.session_id, &here())
            .expect("revoke");
        let records = w
            .sql
            .run(|db| Ok(coffer_audit::entries(db, &coffer_audit::Filter::default())))
            .expect("run")
            .expect("entries");
        let summary: Vec<(&str, &str, Option<&str>, &str)> = records
            .iter()
            .rev()
            .map(|r| {
                (
                    r.actor.as_str(),
                    r.action.as_str(),
                    r.subject.as_deref(),
                    r.outcome.as_str(),
                )
            })
            .collect();
        let customer = format!("customer:{customer_id}");
        let subject = Some(customer_id.as_str());
        assert_eq!(
            summary,
            [
                ("anonymous", "registration_started", None, "ok"),
                (customer.as_str(), "registered", subject, "ok"),
                ("anonymous", "sign_in_failed", None, "refused"),
                ("anonymous", "sign_in_failed", subject, "refused"),
                (customer.as_str(), "session_revoked", subject, "ok"),
            ],
            "{}",
            db.name()
        );
        assert!(records.iter().all(|r| r.ip == "203.0.113.7"));
        // What was typed never reaches the log: not the contact, not the password.
        for record in &records {
            let text = format!("{record:?}");
            for typed in ["13900139000", "13800138000", "hunter2"] {
                assert!(!text.contains(typed), "{typed} in {record:?}");
            }
        }
        let events = w.identity.security_events(&customer_id).expect("events");
        let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(kinds, ["session_revoked", "sign_in_failed", "registered"]);
        let report = w
            .sql
            .run(|db| Ok(coffer_audit::verify(db, &mut |_| {})))
            .expect("run")
            .expect("verify");
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 5);
    }
}

#[test]
fn no_password_contact_code_or_token_is_stored_in_clear() {
    let db = TestDatabase::sqlite();
    let w = world(&db.database);
    let started = w
        .identity
        .start_registration(PHONE, &here())
        .expect("start");
    let code = w.code_for(PHONE);
    let (_, session) = w
        .identity
        .complete_registration(
            &started.registration_id,
            &secret(&code),
            &secret(PASSWORD),
            "张伟",
            TERMS_VERSION,
            &here(),
        )
        .expect("complete");
    w.sql
        .run(|db| db.execute("PRAGMA wal_checkpoint(TRUNCATE)", &[]))
        .ok();
    let Database::Sqlite(path) = &db.database else {
        unreachable!()
    };
    let mut bytes = std::fs::read(path).expect("db file");
    bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in [
        PASSWORD,
        "13800138000",
        "张伟",
        session.token.expose().as_str(),
        &format!("is {code}"),
    ] {
        assert!(!contains(needle), "{needle:?} found in the database file");
    }
}

fn totp_code(base32: &str, clock: &ManualClock) -> String {
    use coffer_core::Clock;
    let seed = totp_rs::Secret::Encoded(base32.to_string())
        .to_bytes()
        .expect("base32");
    let generator = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, seed).expect("totp");
    generator.generate(u64::try_from(clock.now().as_nanos() / 1_000_000_000).expect("time"))
}

#[test]
fn totp_enrolment_guards_sign_in_and_codes_do_not_replay() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (_, token) = w.register(PHONE);
        let me = w.identity.authenticate(&token).expect("me");
        let enrolment = w.identity.enroll_totp(&me).expect("enrol");
        assert!(enrolment
            .otpauth_url
            .expose()
            .starts_with("otpauth://totp/Coffer:"));
        assert!(enrolment.qr_svg.expose().contains("<svg"));
        let seed = enrolment.secret_base32.expose().clone();
        assert!(
            matches!(
                w.identity.confirm_totp(&me, &secret("000000"), &here()),
                Err(IdentityError::CodeInvalid)
            ) || totp_code(&seed, &w.clock) == "000000"
        );
        let recovery = w
            .identity
            .confirm_totp(&me, &secret(&totp_code(&seed, &w.clock)), &here())
            .expect("confirm");
        assert_eq!(recovery.len(), 10);
        // Enrolling again needs the old one removed first.
        assert!(matches!(
            w.identity.enroll_totp(&me),
            Err(IdentityError::Conflict(_))
        ));

        // Sign-in now asks for the second factor.
        let SignIn::SecondFactor(challenge) = w
            .identity
            .login(PHONE, &secret(PASSWORD), &here())
            .expect("login")
        else {
            panic!("no second factor asked");
        };
        // The code just used for confirming is spent: moving to the next step.
        w.clock.advance_millis(30_000);
        let code = totp_code(&seed, &w.clock);
        w.identity
            .complete_sign_in(&challenge.id, &secret(&code), &here())
            .expect("second factor");
        // The same code again (another challenge): refused, it was used.
        let SignIn::SecondFactor(again) = w
            .identity
            .login(PHONE, &secret(PASSWORD), &here())
            .expect("login")
        else {
            panic!("no second factor asked");
        };
        assert!(matches!(
            w.identity
                .complete_sign_in(&again.id, &secret(&code), &here()),
            Err(IdentityError::CodeInvalid)
        ));
        // A recovery code works once.
        let recovery_code = recovery[0].expose().clone();
        w.identity
            .complete_sign_in(&again.id, &secret(&recovery_code), &here())
            .expect("recovery code");
        let SignIn::SecondFactor(third) = w
            .identity
            .login(PHONE, &secret(PASSWORD), &here())
            .expect("login")
        else {
            panic!("no second factor asked");
        };
        assert!(matches!(
            w.identity
                .complete_sign_in(&third.id, &secret(&recovery_code), &here()),
            Err(IdentityError::CodeInvalid)
        ));
        // A used challenge cannot mint a second session.
        assert!(matches!(
            w.identity
                .complete_sign_in(&again.id, &secret(&recovery[1].expose().clone()), &here()),
            Err(IdentityError::ChallengeInvalid)
        ));
        // Wrong answers use up a challenge.
        for _ in 0..5 {
            let _ = w
                .identity
                .complete_sign_in(&third.id, &secret("999999x"), &here());
        }
        let events = w.identity.security_events(&me.customer_id).expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.0 == "sign_in_failed" && e.2 == "second factor"),
            "wrong second factors are audited: {events:?}"
        );
        w.clock.advance_millis(30_000);
        assert!(matches!(
            w.identity
                .complete_sign_in(&third.id, &secret(&totp_code(&seed, &w.clock)), &here()),
            Err(IdentityError::ChallengeInvalid)
        ));
        // The customer was told about the new factor.
        w.dispatcher.run_once().expect("dispatch");
        assert!(w
            .sms
            .to(PHONE)
            .iter()
            .any(|m| m.body.expose().contains("authenticator app was added")));
    }
}

#[test]
fn step_up_is_single_use_short_lived_and_bound_to_the_operation() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (customer, token) = w.register(PHONE);
        let me = w.identity.authenticate(&token).expect("me");
        let pay = Operation {
            kind: "payment".into(),
            amount: 500_000,
            currency: "CNY".into(),
            payee: "merchant:city-metro".into(),
        };
        // Without TOTP enrolled, the code goes by SMS.
        assert!(matches!(
            w.identity.start_step_up(&me, &pay, Method::Totp),
            Err(IdentityError::InvalidField {
                field: "method",
                ..
            })
        ));
        let challenge = w
            .identity
            .start_step_up(&me, &pay, Method::Sms)
            .expect("challenge");
        let code = w.code_for(PHONE);
        // Not yet verified: nothing passes.
        assert!(matches!(
            w.identity
                .consume_step_up_now(&customer, &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));
        assert!(matches!(
            w.identity
                .verify_step_up(&me, &challenge.id, &secret("12345x"), &here()),
            Err(IdentityError::CodeInvalid)
        ));
        assert_eq!(
            w.identity.security_events(&customer).expect("events")[0].0,
            "step_up_failed"
        );
        w.identity
            .verify_step_up(&me, &challenge.id, &secret(&code), &here())
            .expect("verify");
        // Another amount, another payee, another customer: refused.
        let more = Operation {
            amount: 500_001,
            ..pay.clone()
        };
        let elsewhere = Operation {
            payee: "wallet:cus_mallory:cny".into(),
            ..pay.clone()
        };
        for other in [&more, &elsewhere] {
            assert!(matches!(
                w.identity
                    .consume_step_up_now(&customer, &challenge.id, other),
                Err(IdentityError::StepUpRequired)
            ));
        }
        assert!(matches!(
            w.identity
                .consume_step_up_now("cus_someoneelse", &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));
        // Exactly this operation: once.
        w.identity
            .consume_step_up_now(&customer, &challenge.id, &pay)
            .expect("consume");
        assert!(matches!(
            w.identity
                .consume_step_up_now(&customer, &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));
        // Short-lived: a verified challenge expires unused.
        let late = w
            .identity
            .start_step_up(&me, &pay, Method::Sms)
            .expect("challenge");
        let code = w.code_for(PHONE);
        w.identity
            .verify_step_up(&me, &late.id, &secret(&code), &here())
            .expect("verify");
        w.clock.advance_millis(301_000);
        assert!(matches!(
            w.identity.consume_step_up_now(&customer, &late.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));
    }
}

#[test]
fn a_sign_in_from_a_new_device_alerts_the_customer_once() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        w.register(PHONE);
        let alerts = |w: &World| -> Vec<String> {
            w.dispatcher.run_once().expect("dispatch");
            w.sms
                .to(PHONE)
                .into_iter()
                .map(|m| m.body.expose().clone())
                .filter(|body| body.contains("new device"))
                .collect()
        };
        // Registration's own session and a sign-in on the same device: no alert.
        session(
            w.identity
                .login(PHONE, &secret(PASSWORD), &here())
                .expect("same device"),
        );
        assert!(alerts(&w).is_empty(), "the known device raised an alert");

        // A device the wallet has not seen: one alert naming it (the label's
        // Chinese characters stay in the English text, not split off as Chinese).
        let elsewhere = Context {
            ip: "198.51.100.23".into(),
            device: "Unknown tablet\u{7}\n新平板".into(),
        };
        session(
            w.identity
                .login(PHONE, &secret(PASSWORD), &elsewhere)
                .expect("new device"),
        );
        let sent = alerts(&w);
        assert_eq!(sent.len(), 1, "one alert for the new device: {sent:?}");
        assert!(sent[0].contains("Unknown tablet新平板"), "{}", sent[0]);
        assert!(sent[0].contains("198.51.100.23"), "{}", sent[0]);
        assert!(
            !sent[0].contains('\u{7}'),
            "control characters reach the SMS"
        );

        // The same new device again is no longer new.
        session(
            w.identity
                .login(PHONE, &secret(PASSWORD), &elsewhere)
                .expect("again"),
        );
        assert_eq!(alerts(&w).len(), 1, "a second alert for a known device");
    }
}
