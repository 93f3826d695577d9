//! Marketing campaigns on both backends: only opted-in customers are counted
//! and reached, the segment filters by KYC tier, a send repeated after an
//! interruption reaches nobody twice, and each message says how to stop them.

use std::sync::Arc;

use coffer_app::ManualClock;
use coffer_core::{Secret, Timestamp};
use coffer_identity::{Context, Identity, PasswordPolicy, Policy};
use coffer_notify::alerts::Bilingual;
use coffer_notify::{inbox, preferences, Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_payments::{CampaignError, Campaigns, Segment};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

#[test]
fn campaigns_reach_only_opted_in_customers_of_their_segment_once() {
    for db in TestDatabase::both() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
            1_800_000_000_000_000_000,
        )));
        let sql = Arc::new(SqlStore::open(&db.database, 4).expect("sql"));
        let vault = Arc::new(
            Vault::open(
                Arc::new(LocalMasterKey::from_bytes([3; 32])),
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
        let identity = Arc::new(Identity::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
            Policy::default(),
            PasswordPolicy::new(None),
        ));
        let context = Context {
            ip: "test".into(),
            device: "test".into(),
        };
        let mut ids = Vec::new();
        for phone in ["+8613700000001", "+8613700000002", "+8613700000003"] {
            let started = identity.start_registration(phone, &context).expect("start");
            dispatcher.run_once().expect("dispatch");
            let code = sms.last_code(phone).expect("code");
            let (customer, _) = identity
                .complete_registration(
                    &started.registration_id,
                    &Secret::new(code),
                    &Secret::new("a walk by the lake".into()),
                    "Cam Paign",
                    coffer_identity::TERMS_VERSION,
                    &context,
                )
                .expect("complete");
            ids.push(customer.id);
        }
        // Two opt in; the third never does.
        for id in &ids[..2] {
            sql.transaction(|db| preferences::set_marketing_consent(db, id, true, "app", 1))
                .expect("consent");
        }
        let campaigns = Campaigns::new(sql.clone(), vault.clone(), identity.clone(), clock.clone());
        let text = Bilingual::new(
            "Spring offer",
            "5% back on dining.",
            "春季优惠",
            "餐饮返现 5%。",
        );
        let everyone = campaigns
            .create("staff:pm", "10.0.0.1", "Spring", &Segment::default(), &text)
            .expect("create");
        assert_eq!(campaigns.preview(&everyone.id).expect("preview"), 2);
        // Tier 1 and up: nobody here has passed KYC.
        let verified = campaigns
            .create(
                "staff:pm",
                "10.0.0.1",
                "Verified only",
                &Segment {
                    kyc_tier_min: Some(1),
                    ..Segment::default()
                },
                &text,
            )
            .expect("create");
        assert_eq!(campaigns.preview(&verified.id).expect("preview"), 0);
        assert!(matches!(
            campaigns.create(
                "staff:pm",
                "",
                "Bad",
                &Segment {
                    kyc_tier_min: Some(7),
                    ..Segment::default()
                },
                &text
            ),
            Err(CampaignError::Invalid { .. })
        ));

        assert_eq!(
            campaigns
                .send(&everyone.id, "staff:checker", "")
                .expect("send"),
            2
        );
        assert!(matches!(
            campaigns.send(&everyone.id, "staff:checker", ""),
            Err(CampaignError::AlreadySent)
        ));
        let sent = campaigns.get(&everyone.id).expect("get");
        assert_eq!((sent.state.as_str(), sent.sent_to), ("sent", Some(2)));
        for (id, expected) in ids.iter().zip([1, 1, 0]) {
            let page = sql
                .transaction(|db| inbox::list(db, &vault, id, None, 10, false))
                .expect("inbox");
            let marketing: Vec<_> = page
                .items
                .iter()
                .filter(|i| i.template == "marketing_campaign")
                .collect();
            assert_eq!(marketing.len(), expected, "{id}");
            if let Some(item) = marketing.first() {
                assert!(item.body.contains("To stop marketing messages"), "{item:?}");
            }
        }
        dispatcher.run_once().expect("dispatch");
        assert!(sms
            .to("+8613700000003")
            .iter()
            .all(|m| !m.body.expose().contains("dining")));
        assert!(sms
            .to("+8613700000001")
            .iter()
            .any(|m| m.body.expose().contains("dining")));
    }
}
