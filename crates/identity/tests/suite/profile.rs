//! A customer's own profile and credentials on both backends: the display
//! name, moving the sign-in to another contact with codes to the old and
//! the new one, changing the password, and resetting a forgotten one (which
//! also lifts a sign-in lock); every refusal, and nothing new in clear.

use coffer_app::ManualClock;
use coffer_core::Secret;
use coffer_identity::{
    ContactKind, Context, IdentityError, NewSession, SessionInfo, SignIn, TERMS_VERSION,
};
use coffer_notify::SimulatedTransport;
use coffer_store::Database;
use coffer_testkit::TestDatabase;

const PHONE: &str = "+8613800138000";
const NEW_PHONE: &str = "+8613911112222";
const OTHER_PHONE: &str = "+8613733334444";
const EMAIL: &str = "li.na@example.com";
const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "purple lanterns at midnight";

use crate::support::world::{world, World};

fn here() -> Context {
    Context {
        ip: "192.0.2.44".into(),
        device: "Test phone".into(),
    }
}

fn secret(text: &str) -> Secret<String> {
    Secret::new(text.to_string())
}

/// A code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "000001"
    } else {
        "000000"
    }
}

fn session(sign_in: SignIn) -> NewSession {
    match sign_in {
        SignIn::Session(session) => session,
        SignIn::SecondFactor(challenge) => panic!("unexpected second factor {challenge:?}"),
    }
}

impl World {
    fn transport(&self, to: &str) -> &SimulatedTransport {
        if to.contains('@') {
            &self.email
        } else {
            &self.sms
        }
    }

    /// Delivers what is due and returns the newest message's text to `to`.
    fn last_message(&self, to: &str) -> String {
        self.dispatcher.run_once().expect("dispatch");
        self.transport(to)
            .to(to)
            .pop()
            .map(|m| m.body.expose().clone())
            .unwrap_or_default()
    }

    fn code_sent_to(&self, to: &str) -> String {
        self.dispatcher.run_once().expect("dispatch");
        self.transport(to).last_code(to).expect("a code was sent")
    }

    /// Registers `phone` and returns its session.
    fn register_session(&self, phone: &str) -> SessionInfo {
        self.register_with_token(phone).0
    }

    fn register_with_token(&self, phone: &str) -> (SessionInfo, Secret<String>) {
        let started = self
            .identity
            .start_registration(phone, &here())
            .expect("start");
        let code = self.code_sent_to(phone);
        let (_, session) = self
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
        let info = self
            .identity
            .authenticate(&session.token)
            .expect("authenticate");
        (info, session.token)
    }

    fn sign_in(&self, contact: &str, password: &str) -> Result<NewSession, IdentityError> {
        self.identity
            .login(contact, &secret(password), &here())
            .map(session)
    }

    fn actions(&self, customer_id: &str) -> Vec<String> {
        self.identity
            .security_events(customer_id)
            .expect("events")
            .into_iter()
            .map(|e| e.0)
            .collect()
    }

    /// Starts a contact change and reads both codes.
    fn start_change(&self, me: &SessionInfo, from: &str, to: &str) -> (String, String, String) {
        let change = self
            .identity
            .start_contact_change(me, to, &here())
            .expect("start change");
        (
            change.change_id,
            self.code_sent_to(from),
            self.transport(to)
                .last_code(to)
                .expect("a code to the new contact"),
        )
    }

    /// Fails sign-in (waiting out each back-off) until the contact is locked.
    fn lock(&self, contact: &str) {
        for _ in 0..self.identity.policy().lock_after_failures {
            self.clock.advance_millis(600_000);
            assert!(matches!(
                self.sign_in(contact, "wrong password"),
                Err(IdentityError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            self.sign_in(contact, PASSWORD),
            Err(IdentityError::Throttled { retry_after_seconds }) if retry_after_seconds > 600
        ));
    }
}

#[test]
fn the_display_name_is_validated_encrypted_and_audited() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let me = w.register_session(PHONE);
        let updated = w
            .identity
            .update_profile(&me, "  王芳  ", &here())
            .expect("update");
        assert_eq!(updated.display_name.expose(), "王芳");
        assert_eq!(
            w.identity
                .customer(&me.customer_id)
                .expect("customer")
                .display_name
                .expose(),
            "王芳"
        );
        let too_long = "x".repeat(65);
        for bad in ["", "   ", "a\u{7}b", too_long.as_str()] {
            assert!(
                matches!(
                    w.identity.update_profile(&me, bad, &here()),
                    Err(IdentityError::InvalidField {
                        field: "display_name",
                        ..
                    })
                ),
                "{bad:?} accepted on {}",
                db.name()
            );
        }
        let events = w.identity.security_events(&me.customer_id).expect("events");
        assert_eq!(
            (events[0].0.as_str(), events[0].2.as_str()),
            ("profile_updated", "display_name"),
            "which field changed, never its value"
        );
    }
}

#[test]
fn a_contact_change_needs_both_codes_moves_the_sign_in_and_alerts_the_old_contact() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let me = w.register_session(PHONE);
        let other = w.register_session(OTHER_PHONE);
        // A reset started on the old number must not survive the change.
        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("reset");
        let reset_code = w.code_sent_to(PHONE);

        let change = w
            .identity
            .start_contact_change(&me, " +86 139 1111 2222 ", &here())
            .expect("start");
        assert_eq!(
            (change.old_sent_to.as_str(), change.new_sent_to.as_str()),
            ("+86*******8000", "+86*******2222")
        );
        let old_code = w.code_sent_to(PHONE);
        let new_code = w.code_sent_to(NEW_PHONE);
        let confirm = |who: &SessionInfo, old: &str, new: &str| {
            w.identity.confirm_contact_change(
                who,
                &change.change_id,
                &secret(old),
                &secret(new),
                &here(),
            )
        };
        // Either code wrong, the codes swapped, or someone else confirming: refused.
        for (who, old, new) in [
            (&me, wrong(&old_code), new_code.as_str()),
            (&me, old_code.as_str(), wrong(&new_code)),
            (&me, new_code.as_str(), old_code.as_str()),
            (&other, old_code.as_str(), new_code.as_str()),
        ] {
            assert!(
                matches!(confirm(who, old, new), Err(IdentityError::CodeInvalid)),
                "{}",
                db.name()
            );
        }
        let customer = confirm(&me, &old_code, &new_code).expect("confirm");
        assert_eq!(customer.contact_masked, "+86*******2222");
        assert_eq!(customer.contact_kind, ContactKind::Phone);
        // Single use.
        assert!(matches!(
            confirm(&me, &old_code, &new_code),
            Err(IdentityError::CodeInvalid)
        ));
        // The old number is told, and no longer signs in; the new one does.
        let alert = w.last_message(PHONE);
        assert!(alert.contains("was moved to +86*******2222"), "{alert}");
        assert!(matches!(
            w.sign_in(PHONE, PASSWORD),
            Err(IdentityError::InvalidCredentials)
        ));
        w.sign_in(NEW_PHONE, PASSWORD)
            .expect("the new number signs in");
        assert!(matches!(
            w.identity.complete_password_reset(
                &reset.reset_id,
                &secret(&reset_code),
                &secret(NEW_PASSWORD),
                None,
                &here()
            ),
            Err(IdentityError::CodeInvalid)
        ));
        let actions = w.actions(&me.customer_id);
        for action in [
            "contact_change_started",
            "contact_change_failed",
            "contact_changed",
        ] {
            assert!(
                actions.iter().any(|a| a == action),
                "{action} in {actions:?}"
            );
        }
        // The other customer's wrong try counted nothing against this change.
        assert!(!w
            .actions(&other.customer_id)
            .iter()
            .any(|a| a == "contact_change_failed"));

        // From a phone to an e-mail address.
        let (id, old_code, new_code) = w.start_change(&me, NEW_PHONE, EMAIL);
        let customer = w
            .identity
            .confirm_contact_change(&me, &id, &secret(&old_code), &secret(&new_code), &here())
            .expect("confirm");
        assert_eq!(
            (customer.contact_kind, customer.contact_masked.as_str()),
            (ContactKind::Email, "l***@example.com")
        );
        w.sign_in(EMAIL, PASSWORD).expect("the address signs in");
        assert!(w.last_message(NEW_PHONE).contains("l***@example.com"));
    }
}

#[test]
fn contact_change_codes_expire_die_after_five_tries_and_requests_are_limited() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let me = w.register_session(PHONE);
        assert!(matches!(
            w.identity
                .start_contact_change(&me, "+86 138 0013 8000", &here()),
            Err(IdentityError::InvalidField {
                field: "new_contact",
                ..
            })
        ));
        assert!(matches!(
            w.identity.start_contact_change(&me, "13911112222", &here()),
            Err(IdentityError::InvalidField {
                field: "new_contact",
                ..
            })
        ));
        // Ten minutes, then no more.
        let (id, old_code, new_code) = w.start_change(&me, PHONE, NEW_PHONE);
        w.clock.advance_millis(601_000);
        assert!(matches!(
            w.identity.confirm_contact_change(
                &me,
                &id,
                &secret(&old_code),
                &secret(&new_code),
                &here()
            ),
            Err(IdentityError::CodeInvalid)
        ));
        // Five wrong tries kill it, even for the right codes.
        let (id, old_code, new_code) = w.start_change(&me, PHONE, NEW_PHONE);
        for _ in 0..5 {
            let _ = w.identity.confirm_contact_change(
                &me,
                &id,
                &secret(wrong(&old_code)),
                &secret(&new_code),
                &here(),
            );
        }
        assert!(matches!(
            w.identity.confirm_contact_change(
                &me,
                &id,
                &secret(&old_code),
                &secret(&new_code),
                &here()
            ),
            Err(IdentityError::CodeInvalid)
        ));
        // Each request sends two messages: a few per hour.
        let mut throttled = false;
        for _ in 0..5 {
            throttled |= matches!(
                w.identity.start_contact_change(&me, NEW_PHONE, &here()),
                Err(IdentityError::Throttled { .. })
            );
        }
        assert!(throttled, "{}", db.name());
        assert_eq!(
            w.identity
                .customer(&me.customer_id)
                .expect("customer")
                .contact_masked,
            "+86*******8000"
        );
    }
}

#[test]
fn moving_to_a_taken_contact_answers_the_same_and_can_never_complete() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let me = w.register_session(PHONE);
        let owner = w.register_session(OTHER_PHONE);
        let free = w
            .identity
            .start_contact_change(&me, NEW_PHONE, &here())
            .expect("free");
        let taken = w
            .identity
            .start_contact_change(&me, OTHER_PHONE, &here())
            .expect("the same answer");
        assert!(taken.change_id.starts_with("chg_") && free.change_id.starts_with("chg_"));
        assert_eq!(taken.change_id.len(), free.change_id.len());
        assert_eq!(taken.new_sent_to, "+86*******4444");
        assert_eq!(taken.expires_at, free.expires_at);
        let old_code = w.code_sent_to(PHONE);
        // The owner of the number gets a notice, not a code.
        let notice = w.last_message(OTHER_PHONE);
        assert!(notice.contains("Nothing will change"), "{notice}");
        assert_eq!(w.sms.last_code(OTHER_PHONE), None);
        for new_code in ["000000", "123456", "999999"] {
            assert!(matches!(
                w.identity.confirm_contact_change(
                    &me,
                    &taken.change_id,
                    &secret(&old_code),
                    &secret(new_code),
                    &here()
                ),
                Err(IdentityError::CodeInvalid)
            ));
        }
        // Nothing moved: both still sign in with their own numbers.
        w.sign_in(PHONE, PASSWORD).expect("mine");
        w.sign_in(OTHER_PHONE, PASSWORD).expect("theirs");
        assert!(w
            .actions(&owner.customer_id)
            .iter()
            .all(|a| a == "registered" || a == "signed_in"));
    }
}

#[test]
fn a_password_change_needs_the_current_password_and_signs_out_other_devices() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (me, token) = w.register_with_token(PHONE);
        let laptop = w.sign_in(PHONE, PASSWORD).expect("second device");
        let change = |current: &str, new: &str| {
            w.identity
                .change_password(&me, &secret(current), &secret(new), &here())
        };
        assert!(matches!(
            change("not my password", NEW_PASSWORD),
            Err(IdentityError::CurrentPasswordWrong)
        ));
        for weak in ["short", "password123", "abcdefghij", "my13800138000"] {
            assert!(
                matches!(change(PASSWORD, weak), Err(IdentityError::WeakPassword(_))),
                "{weak}"
            );
        }
        assert_eq!(change(PASSWORD, NEW_PASSWORD).expect("change"), 1);
        // This device stays signed in; the other is signed out.
        w.identity.authenticate(&token).expect("this session");
        assert!(matches!(
            w.identity.authenticate(&laptop.token),
            Err(IdentityError::Unauthenticated)
        ));
        assert!(matches!(
            w.sign_in(PHONE, PASSWORD),
            Err(IdentityError::InvalidCredentials)
        ));
        w.sign_in(PHONE, NEW_PASSWORD).expect("the new password");
        assert!(w
            .last_message(PHONE)
            .contains("password of your Coffer wallet was changed"));
        let actions = w.actions(&me.customer_id);
        assert!(
            actions.iter().any(|a| a == "password_changed"),
            "{actions:?}"
        );
        assert!(
            actions.iter().any(|a| a == "password_change_failed"),
            "{actions:?}"
        );

        // Guessing the current password spends the sign-in budget of the contact.
        let mut throttled = false;
        for _ in 0..6 {
            throttled |= matches!(
                change("guess guess guess", "another fine passphrase"),
                Err(IdentityError::Throttled { .. })
            );
        }
        assert!(throttled, "{}", db.name());
        assert!(matches!(
            w.sign_in(PHONE, NEW_PASSWORD),
            Err(IdentityError::Throttled { .. })
        ));
    }
}

#[test]
fn a_password_reset_sets_the_password_signs_out_everywhere_and_lifts_the_lock() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let (me, token) = w.register_with_token(PHONE);
        w.lock(PHONE);
        // The reset starts while the contact is locked.
        let reset = w
            .identity
            .start_password_reset("+86 138 0013 8000", &here())
            .expect("start");
        assert_eq!(reset.sent_to, "+86*******8000");
        let code = w.code_sent_to(PHONE);
        let complete = |code: &str, password: &str| {
            w.identity.complete_password_reset(
                &reset.reset_id,
                &secret(code),
                &secret(password),
                None,
                &here(),
            )
        };
        assert!(matches!(
            complete(wrong(&code), NEW_PASSWORD),
            Err(IdentityError::CodeInvalid)
        ));
        assert!(matches!(
            complete(&code, "password123"),
            Err(IdentityError::WeakPassword(_))
        ));
        assert_eq!(complete(&code, NEW_PASSWORD).expect("reset"), 1);
        assert!(matches!(
            complete(&code, NEW_PASSWORD),
            Err(IdentityError::CodeInvalid)
        ));
        // Every session ended; the lock is gone; only the new password works.
        assert!(matches!(
            w.identity.authenticate(&token),
            Err(IdentityError::Unauthenticated)
        ));
        w.sign_in(PHONE, NEW_PASSWORD)
            .expect("signs in at once: the code lifted the lock");
        assert!(matches!(
            w.sign_in(PHONE, PASSWORD),
            Err(IdentityError::InvalidCredentials)
        ));
        assert!(w.last_message(PHONE).contains("was reset with a code"));
        let actions = w.actions(&me.customer_id);
        for action in [
            "locked",
            "password_reset_started",
            "password_reset_failed",
            "password_reset",
        ] {
            assert!(
                actions.iter().any(|a| a == action),
                "{action} in {actions:?}"
            );
        }
    }
}

#[test]
fn a_reset_for_an_unknown_contact_answers_the_same_and_codes_expire_and_die() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        w.register_session(PHONE);
        let unknown = w
            .identity
            .start_password_reset(NEW_PHONE, &here())
            .expect("the same answer");
        assert!(unknown.reset_id.starts_with("pwr_"));
        assert_eq!(unknown.sent_to, "+86*******2222");
        w.dispatcher.run_once().expect("dispatch");
        assert!(w.sms.to(NEW_PHONE).is_empty(), "no code for a stranger");
        for code in ["000000", "123456", "999999"] {
            assert!(matches!(
                w.identity.complete_password_reset(
                    &unknown.reset_id,
                    &secret(code),
                    &secret(NEW_PASSWORD),
                    None,
                    &here()
                ),
                Err(IdentityError::CodeInvalid)
            ));
        }
        assert!(matches!(
            w.identity.start_password_reset("not a contact", &here()),
            Err(IdentityError::InvalidField {
                field: "contact",
                ..
            })
        ));
        let attempt = |reset_id: &str, code: &str| {
            w.identity.complete_password_reset(
                reset_id,
                &secret(code),
                &secret(NEW_PASSWORD),
                None,
                &here(),
            )
        };
        // Expired.
        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("start");
        let code = w.code_sent_to(PHONE);
        w.clock.advance_millis(301_000);
        assert!(matches!(
            attempt(&reset.reset_id, &code),
            Err(IdentityError::CodeInvalid)
        ));
        // Five wrong tries.
        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("start");
        let code = w.code_sent_to(PHONE);
        for _ in 0..5 {
            let _ = attempt(&reset.reset_id, wrong(&code));
        }
        assert!(matches!(
            attempt(&reset.reset_id, &code),
            Err(IdentityError::CodeInvalid)
        ));
        // A few requests per contact and hour, known or not.
        for contact in [PHONE, NEW_PHONE] {
            let mut throttled = false;
            for _ in 0..5 {
                throttled |= matches!(
                    w.identity.start_password_reset(contact, &here()),
                    Err(IdentityError::Throttled { .. })
                );
            }
            assert!(throttled, "{contact} on {}", db.name());
        }
        w.sign_in(PHONE, PASSWORD)
            .expect("the password never changed");
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
fn a_reset_of_a_wallet_with_an_authenticator_needs_a_code_from_it() {
    for db in TestDatabase::both() {
        let w = world(&db.database);
        let me = w.register_session(PHONE);
        let enrolment = w.identity.enroll_totp(&me).expect("enrol");
        let seed = enrolment.secret_base32.expose().clone();
        let recovery = w
            .identity
            .confirm_totp(&me, &secret(&totp_code(&seed, &w.clock)), &here())
            .expect("confirm");
        w.clock.advance_millis(30_000);

        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("start");
        let code = w.code_sent_to(PHONE);
        let complete = |totp: Option<&str>| {
            w.identity.complete_password_reset(
                &reset.reset_id,
                &secret(&code),
                &secret(NEW_PASSWORD),
                totp.map(secret).as_ref(),
                &here(),
            )
        };
        // The SMS code alone is what a SIM swap gets: not enough.
        assert!(matches!(
            complete(None),
            Err(IdentityError::SecondFactorRequired)
        ));
        let current = totp_code(&seed, &w.clock);
        assert!(matches!(
            complete(Some(wrong(&current))),
            Err(IdentityError::SecondFactorInvalid)
        ));
        complete(Some(&current)).expect("with the authenticator");
        assert!(matches!(
            w.identity.login(PHONE, &secret(NEW_PASSWORD), &here()),
            Ok(SignIn::SecondFactor(_))
        ));

        // A recovery code stands in for the app; used once, it is spent.
        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("start");
        let code = w.code_sent_to(PHONE);
        let recovery_code = recovery[0].expose().clone();
        w.identity
            .complete_password_reset(
                &reset.reset_id,
                &secret(&code),
                &secret(PASSWORD),
                Some(&secret(&recovery_code)),
                &here(),
            )
            .expect("with a recovery code");
        let reset = w
            .identity
            .start_password_reset(PHONE, &here())
            .expect("start");
        let code = w.code_sent_to(PHONE);
        assert!(matches!(
            w.identity.complete_password_reset(
                &reset.reset_id,
                &secret(&code),
                &secret(NEW_PASSWORD),
                Some(&secret(&recovery_code)),
                &here(),
            ),
            Err(IdentityError::SecondFactorInvalid)
        ));
    }
}

#[test]
fn new_contacts_and_new_passwords_are_not_stored_in_clear() {
    let db = TestDatabase::sqlite();
    let w = world(&db.database);
    let me = w.register_session(PHONE);
    let (id, old_code, new_code) = w.start_change(&me, PHONE, NEW_PHONE);
    w.identity
        .confirm_contact_change(&me, &id, &secret(&old_code), &secret(&new_code), &here())
        .expect("confirm");
    // A change to a taken contact stores that contact too, and it is
    // someone else's: not in clear either.
    w.register_session(OTHER_PHONE);
    w.identity
        .start_contact_change(&me, OTHER_PHONE, &here())
        .expect("taken");
    w.identity
        .change_password(&me, &secret(PASSWORD), &secret(NEW_PASSWORD), &here())
        .expect("change");
    w.identity
        .update_profile(&me, "王芳", &here())
        .expect("profile");
    let reset = w
        .identity
        .start_password_reset(NEW_PHONE, &here())
        .expect("reset");
    let reset_code = w.code_sent_to(NEW_PHONE);
    let reset_password = "quiet snowfall over hangzhou";
    w.identity
        .complete_password_reset(
            &reset.reset_id,
            &secret(&reset_code),
            &secret(reset_password),
            None,
            &here(),
        )
        .expect("reset");
    w.dispatcher.run_once().expect("dispatch");
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
        "13800138000",
        "13911112222",
        "13733334444",
        PASSWORD,
        NEW_PASSWORD,
        reset_password,
        "王芳",
        &format!("is {old_code}"),
        &format!("is {new_code}"),
        &format!("is {reset_code}"),
    ] {
        assert!(!contains(needle), "{needle:?} found in the database file");
    }
}
