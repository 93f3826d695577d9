//! Passkeys on both backends, answered by a software authenticator with a
//! real key pair: register, sign in with nothing but the passkey, and be
//! refused for a replayed ceremony, a forged signature or another origin;
//! confirm a step-up with a passkey, once, for exactly its operation.

use std::sync::Arc;

use crate::support::authenticator::SoftPasskey;
use crate::support::world::{world_with_passkeys, World};
use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_identity::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};
use coffer_identity::{
    Context, Identity, IdentityError, Method, Operation, PasskeySettings, PasswordPolicy, Policy,
    SessionInfo, TERMS_VERSION,
};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

fn here() -> Context {
    Context {
        ip: "192.0.2.9".into(),
        device: "phone".into(),
    }
}

#[test]
fn a_passkey_registers_and_then_signs_in_alone() {
    for db in TestDatabase::both() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
            1_800_000_000_000_000_000,
        )));
        let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
        let vault = Arc::new(
            Vault::open(
                Arc::new(LocalMasterKey::from_bytes([8; 32])),
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
        let settings = PasskeySettings::default();
        let identity = Identity::new(
            sql,
            vault,
            clock,
            Policy::default(),
            PasswordPolicy::new(None),
        )
        .with_passkeys(&settings)
        .expect("passkeys");
        let phone = "+8613711112222";
        let started = identity.start_registration(phone, &here()).expect("start");
        dispatcher.run_once().expect("dispatch");
        let code = sms.last_code(phone).expect("code");
        let (customer, session) = identity
            .complete_registration(
                &started.registration_id,
                &Secret::new(code),
                &Secret::new("morning mist valley".into()),
                "Hu Jun",
                TERMS_VERSION,
                &here(),
            )
            .expect("register");
        let me = identity.authenticate(&session.token).expect("me");

        let mut device = SoftPasskey::new(&settings.rp_id, &settings.origin);
        // A session alone does not add a passkey: it needs a step-up, once.
        assert!(matches!(
            identity.start_passkey_registration(&me, "no-such-challenge"),
            Err(IdentityError::StepUpRequired)
        ));
        let step_up = passkey_step_up(&identity, &dispatcher, &sms, phone, &me);
        let (ceremony, options) = identity
            .start_passkey_registration(&me, &step_up)
            .expect("start");
        assert!(matches!(
            identity.start_passkey_registration(&me, &step_up),
            Err(IdentityError::StepUpRequired)
        ));
        let answer = device.register(&serde_json::to_value(&options).expect("json"));
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(answer).expect("credential");
        let view = identity
            .finish_passkey_registration(&me, &ceremony, &credential, "Hu Jun's phone", &here())
            .expect("finish registration");
        assert_eq!(view.name, "Hu Jun's phone");
        // A registration ceremony is used once.
        assert!(matches!(
            identity.finish_passkey_registration(&me, &ceremony, &credential, "again", &here()),
            Err(IdentityError::ChallengeInvalid)
        ));
        assert_eq!(identity.passkeys(&me).expect("list").len(), 1);

        // Sign-in names no account: the device answers, the server finds whose it is.
        let (ceremony, options) = identity.start_passkey_sign_in().expect("challenge");
        let options = serde_json::to_value(&options).expect("json");
        assert!(options["publicKey"]
            .get("allowCredentials")
            .is_none_or(|a| a.as_array().is_none_or(Vec::is_empty)));
        let answer = device.sign_in(&options);
        let assertion: PublicKeyCredential =
            serde_json::from_value(answer.clone()).expect("assertion");
        let signed_in = identity
            .finish_passkey_sign_in(&ceremony, &assertion, &here())
            .expect("sign in");
        assert_eq!(signed_in.customer_id, customer.id);
        assert!(identity.authenticate(&signed_in.token).is_ok());
        // The same answer again: the ceremony is spent.
        assert!(matches!(
            identity.finish_passkey_sign_in(&ceremony, &assertion, &here()),
            Err(IdentityError::ChallengeInvalid)
        ));

        // A forged signature does not verify.
        let (ceremony, options) = identity.start_passkey_sign_in().expect("challenge");
        let mut forged = device.sign_in(&serde_json::to_value(&options).expect("json"));
        let signature = forged["response"]["signature"]
            .as_str()
            .expect("sig")
            .to_string();
        let mut chars: Vec<char> = signature.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        forged["response"]["signature"] = serde_json::Value::String(chars.into_iter().collect());
        let forged: PublicKeyCredential = serde_json::from_value(forged).expect("assertion");
        assert!(matches!(
            identity.finish_passkey_sign_in(&ceremony, &forged, &here()),
            Err(IdentityError::InvalidField {
                field: "credential",
                ..
            })
        ));

        // A phishing site's origin does not verify either.
        let mut phished = SoftPasskey::new(&settings.rp_id, "https://coffer-bank.example.evil");
        let step_up = passkey_step_up(&identity, &dispatcher, &sms, phone, &me);
        let (ceremony, options) = identity
            .start_passkey_registration(&me, &step_up)
            .expect("start");
        let answer = phished.register(&serde_json::to_value(&options).expect("json"));
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(answer).expect("credential");
        assert!(matches!(
            identity.finish_passkey_registration(&me, &ceremony, &credential, "evil", &here()),
            Err(IdentityError::InvalidField {
                field: "credential",
                ..
            })
        ));
        assert_eq!(identity.passkeys(&me).expect("list").len(), 1);
        dispatcher.run_once().expect("dispatch");
        assert!(sms
            .to(phone)
            .iter()
            .any(|m| m.body.expose().contains("passkey was added")));
    }
}

/// A verified step-up for a passkey change, answered with the SMS code
/// (what `start_passkey_registration` and `remove_passkey` spend).
fn passkey_step_up(
    identity: &Identity,
    dispatcher: &Dispatcher,
    sms: &SimulatedTransport,
    phone: &str,
    me: &SessionInfo,
) -> String {
    let challenge = identity
        .start_step_up(
            me,
            &coffer_identity::passkey_change_operation(),
            Method::Sms,
        )
        .expect("step-up");
    dispatcher.run_once().expect("dispatch");
    let code = sms.last_code(phone).expect("a step-up code");
    identity
        .verify_step_up(me, &challenge.id, &Secret::new(code), &here())
        .expect("verify step-up");
    challenge.id
}

/// A registered, signed-in customer with one passkey on `device`.
fn customer_with_passkey(
    w: &World,
    phone: &str,
    device: &mut SoftPasskey,
) -> (String, SessionInfo) {
    let started = w
        .identity
        .start_registration(phone, &here())
        .expect("start");
    w.dispatcher.run_once().expect("dispatch");
    let code = w.sms.last_code(phone).expect("code");
    let (customer, session) = w
        .identity
        .complete_registration(
            &started.registration_id,
            &Secret::new(code),
            &Secret::new("morning mist valley".into()),
            "Hu Jun",
            TERMS_VERSION,
            &here(),
        )
        .expect("register");
    let me = w.identity.authenticate(&session.token).expect("me");
    let step_up = passkey_step_up(&w.identity, &w.dispatcher, &w.sms, phone, &me);
    let (ceremony, options) = w
        .identity
        .start_passkey_registration(&me, &step_up)
        .expect("start");
    let answer = device.register(&serde_json::to_value(&options).expect("json"));
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(answer).expect("credential");
    w.identity
        .finish_passkey_registration(&me, &ceremony, &credential, "phone", &here())
        .expect("finish registration");
    (customer.id, me)
}

fn assertion(answer: serde_json::Value) -> PublicKeyCredential {
    serde_json::from_value(answer).expect("assertion")
}

/// The same answer with one character of the signature changed.
fn tampered(mut answer: serde_json::Value) -> PublicKeyCredential {
    let signature = answer["response"]["signature"]
        .as_str()
        .expect("signature")
        .to_string();
    let mut chars: Vec<char> = signature.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    answer["response"]["signature"] = serde_json::Value::String(chars.into_iter().collect());
    assertion(answer)
}

fn refused_credential(result: Result<(), IdentityError>) -> bool {
    matches!(
        result,
        Err(IdentityError::InvalidField {
            field: "credential",
            ..
        })
    )
}

#[test]
fn a_passkey_confirms_a_step_up_once_for_exactly_its_operation() {
    let settings = PasskeySettings::default();
    for db in TestDatabase::both() {
        let w = world_with_passkeys(&db.database, &settings);
        let mut device = SoftPasskey::new(&settings.rp_id, &settings.origin);
        let (customer, me) = customer_with_passkey(&w, "+8613711113333", &mut device);
        let mut other_device = SoftPasskey::new(&settings.rp_id, &settings.origin);
        let (_, _) = customer_with_passkey(&w, "+8613711114444", &mut other_device);
        let pay = Operation {
            kind: "payment".into(),
            amount: 128_800,
            currency: "CNY".into(),
            payee: "merchant:city-metro".into(),
        };

        let challenge = w
            .identity
            .start_step_up(&me, &pay, Method::Passkey)
            .expect("challenge");
        assert_eq!(challenge.method, Method::Passkey);
        // The server names this customer's passkey and requires user verification.
        let options = serde_json::to_value(challenge.passkey_options.as_ref().expect("options"))
            .expect("json");
        assert_eq!(options["publicKey"]["userVerification"], "required");
        let allowed: Vec<&str> = options["publicKey"]["allowCredentials"]
            .as_array()
            .expect("allowCredentials")
            .iter()
            .map(|c| c["id"].as_str().expect("id"))
            .collect();
        let answer = device.sign_in(&options);
        assert_eq!(allowed, vec![answer["id"].as_str().expect("id")]);
        assert!(matches!(
            w.identity
                .consume_step_up_now(&customer, &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));

        // A forged signature, a passkey that is not registered, another
        // customer's passkey, or a code: refused, counted and audited.
        assert!(refused_credential(w.identity.verify_step_up_passkey(
            &me,
            &challenge.id,
            &tampered(answer.clone()),
            &here()
        )));
        let events = w.identity.security_events(&customer).expect("events");
        assert_eq!(
            (events[0].0.as_str(), events[0].2.as_str()),
            ("step_up_failed", "passkey")
        );
        let mut stranger = SoftPasskey::new(&settings.rp_id, &settings.origin);
        for foreign in [stranger.sign_in(&options), other_device.sign_in(&options)] {
            assert!(refused_credential(w.identity.verify_step_up_passkey(
                &me,
                &challenge.id,
                &assertion(foreign),
                &here()
            )));
        }
        assert!(matches!(
            w.identity
                .verify_step_up(&me, &challenge.id, &Secret::new("123456".into()), &here()),
            Err(IdentityError::CodeInvalid)
        ));
        assert!(matches!(
            w.identity
                .consume_step_up_now(&customer, &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));

        // The device's real answer verifies, once.
        let good = assertion(answer);
        w.identity
            .verify_step_up_passkey(&me, &challenge.id, &good, &here())
            .expect("verify");
        assert!(matches!(
            w.identity
                .verify_step_up_passkey(&me, &challenge.id, &good, &here()),
            Err(IdentityError::ChallengeInvalid)
        ));
        assert_eq!(
            w.identity.security_events(&customer).expect("events")[0].0,
            "step_up_verified"
        );
        // Verified for exactly this operation: not another amount or payee.
        for other in [
            Operation {
                amount: 128_801,
                ..pay.clone()
            },
            Operation {
                payee: "wallet:cus_mallory:cny".into(),
                ..pay.clone()
            },
        ] {
            assert!(matches!(
                w.identity
                    .consume_step_up_now(&customer, &challenge.id, &other),
                Err(IdentityError::StepUpRequired)
            ));
        }
        w.identity
            .consume_step_up_now(&customer, &challenge.id, &pay)
            .expect("consume");
        assert!(matches!(
            w.identity
                .consume_step_up_now(&customer, &challenge.id, &pay),
            Err(IdentityError::StepUpRequired)
        ));

        // An answer signed for one challenge does not verify another.
        let first = w
            .identity
            .start_step_up(&me, &pay, Method::Passkey)
            .expect("challenge");
        let second = w
            .identity
            .start_step_up(&me, &pay, Method::Passkey)
            .expect("challenge");
        let for_first = device.sign_in(
            &serde_json::to_value(first.passkey_options.as_ref().expect("options")).expect("json"),
        );
        assert!(refused_credential(w.identity.verify_step_up_passkey(
            &me,
            &second.id,
            &assertion(for_first),
            &here()
        )));

        // Five wrong answers end a challenge: the right one comes too late.
        let options =
            serde_json::to_value(second.passkey_options.as_ref().expect("options")).expect("json");
        for _ in 0..4 {
            assert!(refused_credential(w.identity.verify_step_up_passkey(
                &me,
                &second.id,
                &tampered(device.sign_in(&options)),
                &here()
            )));
        }
        assert!(matches!(
            w.identity.verify_step_up_passkey(
                &me,
                &second.id,
                &assertion(device.sign_in(&options)),
                &here()
            ),
            Err(IdentityError::ChallengeInvalid)
        ));

        // Expired: a good answer after five minutes verifies nothing.
        let late = w
            .identity
            .start_step_up(&me, &pay, Method::Passkey)
            .expect("challenge");
        let answer = device.sign_in(
            &serde_json::to_value(late.passkey_options.as_ref().expect("options")).expect("json"),
        );
        w.clock.advance_millis(301_000);
        assert!(matches!(
            w.identity
                .verify_step_up_passkey(&me, &late.id, &assertion(answer), &here()),
            Err(IdentityError::ChallengeInvalid)
        ));
    }
}

#[test]
fn a_passkey_step_up_needs_a_registered_passkey() {
    let settings = PasskeySettings::default();
    for db in TestDatabase::both() {
        let w = world_with_passkeys(&db.database, &settings);
        let started = w
            .identity
            .start_registration("+8613711115555", &here())
            .expect("start");
        w.dispatcher.run_once().expect("dispatch");
        let code = w.sms.last_code("+8613711115555").expect("code");
        let (_, session) = w
            .identity
            .complete_registration(
                &started.registration_id,
                &Secret::new(code),
                &Secret::new("morning mist valley".into()),
                "Hu Jun",
                TERMS_VERSION,
                &here(),
            )
            .expect("register");
        let me = w.identity.authenticate(&session.token).expect("me");
        let pay = Operation {
            kind: "payment".into(),
            amount: 100,
            currency: "CNY".into(),
            payee: "merchant:city-metro".into(),
        };
        assert!(matches!(
            w.identity.start_step_up(&me, &pay, Method::Passkey),
            Err(IdentityError::InvalidField {
                field: "method",
                ..
            })
        ));
    }
}
