//! KYC tiers on both backends: the provider's three answers, one identity
//! per wallet, the staff review queue, and identity data encrypted at rest.

use std::sync::Arc;

use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_identity::{
    Context, IdType, Identity, IdentityError, KycOutcome, PasswordPolicy, Policy, SignIn,
    SimulatedIdentityProvider, TERMS_VERSION,
};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

fn here() -> Context {
    Context {
        ip: "198.51.100.4".into(),
        device: "test".into(),
    }
}

fn secret(text: &str) -> Secret<String> {
    Secret::new(text.to_string())
}

/// A valid resident ID number with the given 17-digit body.
fn resident_id(body: &str) -> String {
    format!(
        "{body}{}",
        coffer_identity::resident_id_check(body).expect("digits")
    )
}

struct World {
    identity: Identity,
    dispatcher: Dispatcher,
    sms: Arc<SimulatedTransport>,
}

fn world(db: &TestDatabase) -> World {
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
        1_800_000_000_000_000_000,
    )));
    let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([4; 32])),
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
    World {
        identity: Identity::new(
            sql,
            vault,
            clock,
            Policy::default(),
            PasswordPolicy::new(None),
        ),
        dispatcher,
        sms,
    }
}

impl World {
    fn customer(&self, phone: &str) -> coffer_identity::SessionInfo {
        let started = self
            .identity
            .start_registration(phone, &here())
            .expect("start");
        self.dispatcher.run_once().expect("dispatch");
        let code = self.sms.last_code(phone).expect("code");
        let (_, session) = self
            .identity
            .complete_registration(
                &started.registration_id,
                &secret(&code),
                &secret("plum blossom rain"),
                "Zhao Lei",
                TERMS_VERSION,
                &here(),
            )
            .expect("register");
        self.identity.authenticate(&session.token).expect("session")
    }
}

#[test]
fn identity_verification_raises_the_tier_once_per_person() {
    for db in TestDatabase::both() {
        let w = world(&db);
        let provider = SimulatedIdentityProvider;
        let alice = w.customer("+8613811111111");
        let id = resident_id("11010119900307123");
        // A malformed number never reaches the provider.
        let mut bad = id.clone();
        bad.replace_range(17..18, if id.ends_with('0') { "1" } else { "0" });
        assert!(matches!(
            w.identity.verify_identity(
                &alice,
                &provider,
                &secret("赵磊"),
                IdType::CnResident,
                &secret(&bad),
                &here()
            ),
            Err(IdentityError::InvalidField {
                field: "id_number",
                ..
            })
        ));
        // The provider rejects a mismatch.
        assert!(matches!(
            w.identity.verify_identity(
                &alice,
                &provider,
                &secret("Reject Me"),
                IdType::CnResident,
                &secret(&id),
                &here()
            ),
            Err(IdentityError::InvalidField {
                field: "id_number",
                ..
            })
        ));
        assert_eq!(w.identity.customer(&alice.customer_id).expect("c").tier, 0);
        // Verified: tier 1.
        assert_eq!(
            w.identity
                .verify_identity(
                    &alice,
                    &provider,
                    &secret("赵磊"),
                    IdType::CnResident,
                    &secret(&id),
                    &here()
                )
                .expect("verify"),
            KycOutcome::Verified { tier: 1 }
        );
        assert_eq!(w.identity.customer(&alice.customer_id).expect("c").tier, 1);
        // The same person cannot back a second wallet.
        let bob = w.customer("+8613822222222");
        assert!(matches!(
            w.identity.verify_identity(
                &bob,
                &provider,
                &secret("赵磊"),
                IdType::CnResident,
                &secret(&id.to_lowercase()),
                &here()
            ),
            Err(IdentityError::Conflict(_))
        ));
        assert_eq!(w.identity.customer(&bob.customer_id).expect("c").tier, 0);
        // A provider outage is "try later", not a refusal.
        assert!(matches!(
            w.identity.verify_identity(
                &bob,
                &provider,
                &secret("Unavailable"),
                IdType::CnResident,
                &secret(&resident_id("11010119900307999")),
                &here()
            ),
            Err(IdentityError::Unavailable(_))
        ));
    }
}

#[test]
fn undecided_identities_and_documents_go_to_staff_review() {
    for db in TestDatabase::both() {
        let w = world(&db);
        let provider = SimulatedIdentityProvider;
        let carol = w.customer("+8613833333333");
        // Tier 2 needs tier 1 first.
        assert!(matches!(
            w.identity.submit_documents(
                &carol,
                "passport",
                &secret("E12345678"),
                "selfie-1",
                &here()
            ),
            Err(IdentityError::InvalidField { field: "tier", .. })
        ));
        let KycOutcome::InReview { review_id } = w
            .identity
            .verify_identity(
                &carol,
                &provider,
                &secret("Please Review"),
                IdType::CnResident,
                &secret(&resident_id("31010419850611002")),
                &here(),
            )
            .expect("review")
        else {
            panic!("expected a review");
        };
        // One pending review per tier at a time.
        assert!(matches!(
            w.identity.verify_identity(
                &carol,
                &provider,
                &secret("Please Review"),
                IdType::CnResident,
                &secret(&resident_id("31010419850611002")),
                &here()
            ),
            Err(IdentityError::Conflict(_))
        ));
        let queue = w.identity.pending_reviews(50).expect("queue");
        assert_eq!(queue.len(), 1);
        assert_eq!(
            (queue[0].id.as_str(), queue[0].target_tier),
            (review_id.as_str(), 1)
        );
        w.identity
            .decide_review(
                &review_id,
                "staff:li.ming",
                true,
                "ID card checked",
                &here(),
            )
            .expect("approve");
        assert_eq!(w.identity.customer(&carol.customer_id).expect("c").tier, 1);
        assert!(matches!(
            w.identity
                .decide_review(&review_id, "staff:li.ming", true, "again", &here()),
            Err(IdentityError::NotFound(_))
        ));
        // Tier 2: documents, then a decline leaves the tier as it was.
        let KycOutcome::InReview { review_id } = w
            .identity
            .submit_documents(
                &carol,
                "passport",
                &secret("E12345678"),
                "selfie-1",
                &here(),
            )
            .expect("documents")
        else {
            panic!("expected a review");
        };
        w.identity
            .decide_review(
                &review_id,
                "staff:wang.fang",
                false,
                "selfie unclear",
                &here(),
            )
            .expect("decline");
        assert_eq!(w.identity.customer(&carol.customer_id).expect("c").tier, 1);
        assert!(w.identity.pending_reviews(50).expect("queue").is_empty());
        let kinds: Vec<String> = w
            .identity
            .security_events(&carol.customer_id)
            .expect("events")
            .into_iter()
            .map(|e| e.0)
            .collect();
        for kind in ["kyc_review_queued", "kyc_approved", "kyc_declined"] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
        // Sign-in is unaffected by KYC.
        assert!(matches!(
            w.identity
                .login("+8613833333333", &secret("plum blossom rain"), &here()),
            Ok(SignIn::Session(_))
        ));
    }
}

#[test]
fn identity_numbers_and_names_are_not_stored_in_clear() {
    let db = TestDatabase::sqlite();
    let w = world(&db);
    let dave = w.customer("+8613844444444");
    let id = resident_id("44030519920815123");
    w.identity
        .verify_identity(
            &dave,
            &SimulatedIdentityProvider,
            &secret("Dave Identityname"),
            IdType::CnResident,
            &secret(&id),
            &here(),
        )
        .expect("verify");
    let coffer_store::Database::Sqlite(path) = &db.database else {
        unreachable!()
    };
    let mut bytes = std::fs::read(path).expect("db");
    bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
    for needle in [id.as_str(), "Identityname"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} in clear"
        );
    }
}
