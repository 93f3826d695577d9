//! Passkeys on both backends, answered by a software authenticator with a
//! real key pair: register, sign in with nothing but the passkey, and be
//! refused for a replayed ceremony, a forged signature or another origin.

mod support {
    pub mod authenticator;
}

use std::sync::Arc;

use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_identity::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};
use coffer_identity::{
    Context, Identity, IdentityError, PasskeySettings, PasswordPolicy, Policy, TERMS_VERSION,
};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};
use support::authenticator::SoftPasskey;

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
        let (ceremony, options) = identity.start_passkey_registration(&me).expect("start");
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
        let (ceremony, options) = identity.start_passkey_registration(&me).expect("start");
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
