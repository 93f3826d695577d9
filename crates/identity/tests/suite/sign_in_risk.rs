//! Every sign-in passes the risk engine (shipped rules), on both backends:
//! a known device and address sign in at once; a new device and address in
//! the small hours, or a sign-in after several wrong passwords, need a
//! one-time code first; a blocklisted device is refused, the customer
//! frozen and alerted and a case opened; each evaluation is recorded with
//! its reasons.

use coffer_core::Secret;
use coffer_identity::{Context, IdentityError, Method, SignIn, TERMS_VERSION};
use coffer_risk::BlockList;
use coffer_testkit::TestDatabase;

use crate::support::world::{world_with_risk, World};

const PHONE: &str = "+8613800138111";
const PASSWORD: &str = "correct horse battery";
const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

fn from(device: &str, ip: &str) -> Context {
    Context {
        ip: ip.into(),
        device: device.into(),
    }
}

fn secret(text: &str) -> Secret<String> {
    Secret::new(text.to_string())
}

fn sms_code(w: &World) -> String {
    w.dispatcher.run_once().expect("dispatch");
    w.sms.last_code(PHONE).expect("a code was sent")
}

fn register(w: &World, context: &Context) -> String {
    let started = w
        .identity
        .start_registration(PHONE, context)
        .expect("start");
    let code = sms_code(w);
    let (customer, _) = w
        .identity
        .complete_registration(
            &started.registration_id,
            &secret(&code),
            &secret(PASSWORD),
            "张伟",
            TERMS_VERSION,
            context,
        )
        .expect("registered");
    customer.id
}

/// Moves the manual clock forward to the next time it is `hour` in China.
fn advance_to_china_hour(w: &World, hour: i64) {
    use coffer_core::Clock;
    let now = w.clock.now().as_nanos();
    let china = (now + 8 * NANOS_PER_HOUR).rem_euclid(24 * NANOS_PER_HOUR);
    let target = hour * NANOS_PER_HOUR;
    let wait = (target - china).rem_euclid(24 * NANOS_PER_HOUR);
    w.clock
        .advance_millis(u64::try_from(wait / 1_000_000).expect("forward"));
}

#[test]
fn sign_ins_are_allowed_stepped_up_or_blocked_by_the_rules() {
    for db in TestDatabase::both() {
        let (w, risk) = world_with_risk(&db.database);
        advance_to_china_hour(&w, 12);
        let home = from("Pixel 8", "203.0.113.7");
        let customer = register(&w, &home);

        // The registering device and address are known from then on.
        let signed = w.identity.login(PHONE, &secret(PASSWORD), &home);
        assert!(matches!(signed, Ok(SignIn::Session(_))), "{signed:?}");
        // A new device and address at noon: noted (score 30), allowed.
        let travel = from("iPad", "198.51.100.20");
        let signed = w.identity.login(PHONE, &secret(PASSWORD), &travel);
        assert!(matches!(signed, Ok(SignIn::Session(_))), "{signed:?}");

        // A new device and address at 02:00 bank time: a one-time code first.
        advance_to_china_hour(&w, 2);
        let night = from("Unknown Android", "192.0.2.99");
        let challenge = match w.identity.login(PHONE, &secret(PASSWORD), &night) {
            Ok(SignIn::SecondFactor(challenge)) => challenge,
            other => panic!("expected a step-up, got {other:?}"),
        };
        assert_eq!(challenge.method, Method::Sms);
        let code = sms_code(&w);
        let session = w
            .identity
            .complete_sign_in(&challenge.id, &secret(&code), &night)
            .expect("the code opens the session");
        assert_eq!(session.customer_id, customer);

        // Three wrong passwords, then the right one from home at noon.
        advance_to_china_hour(&w, 12);
        for _ in 0..3 {
            assert!(matches!(
                w.identity.login(PHONE, &secret("wrong guess"), &home),
                Err(IdentityError::InvalidCredentials)
            ));
        }
        match w.identity.login(PHONE, &secret(PASSWORD), &home) {
            Ok(SignIn::SecondFactor(challenge)) => assert_eq!(challenge.method, Method::Sms),
            other => panic!("expected a step-up after failures, got {other:?}"),
        }
        // The success cleared the count: the next sign-in is plain again.
        let signed = w.identity.login(PHONE, &secret(PASSWORD), &home);
        assert!(matches!(signed, Ok(SignIn::Session(_))), "{signed:?}");

        // A blocklisted device: refused like a wrong password, the customer
        // frozen (sessions ended) and alerted, a case opened.
        let stolen = from("Stolen phone", "203.0.113.7");
        risk.block(
            "staff:analyst",
            BlockList::Device,
            "Stolen phone",
            "reported stolen",
        )
        .expect("block");
        assert!(matches!(
            w.identity.login(PHONE, &secret(PASSWORD), &stolen),
            Err(IdentityError::InvalidCredentials)
        ));
        let view = w.identity.customer(&customer).expect("customer");
        assert_eq!(view.status, "frozen");
        assert!(matches!(
            w.identity.authenticate(&session.token),
            Err(IdentityError::Unauthenticated)
        ));
        w.dispatcher.run_once().expect("dispatch");
        assert!(
            w.sms
                .to(PHONE)
                .iter()
                .any(|m| m.body.expose().contains("frozen")),
            "the customer is told"
        );
        let cases = risk
            .cases(Some("open"), Some(&customer), 10)
            .expect("cases");
        assert_eq!(cases.len(), 1, "{cases:?}");
        assert_eq!(cases[0].kind, "freeze");
        assert_eq!(cases[0].decision, "block_and_freeze");
        assert!(cases[0].reasons.iter().any(|r| r.rule_id == "blocklisted"));

        // Every sign-in was recorded with its decision (registration included).
        let decisions: Vec<(String, String)> = risk
            .evaluations_of(&customer, 20)
            .expect("evaluations")
            .into_iter()
            .map(|e| (e.kind, e.decision))
            .collect();
        let expected: Vec<(String, String)> = [
            "block_and_freeze",
            "allow",
            "step_up",
            "step_up",
            "allow",
            "allow",
            "allow",
        ]
        .iter()
        .map(|d| ("sign_in".to_string(), d.to_string()))
        .collect();
        assert_eq!(decisions, expected);
    }
}
