//! Funding under simulation: the card network and core banking simulators
//! behind `Funding`, the documented test numbers and what each promises,
//! linking them all to a customer, and delivering the simulators'
//! callbacks the way a real network does (some lost, some twice).

use std::sync::Arc;

use coffer_core::Secret;
use coffer_payments::{
    BankAccounts, Callback, Cards, ConnectorKind, Funding, FundingPolicy, NewCard, Simulator,
    SimulatorSettings, WebhookSecret,
};
use rand::rngs::StdRng;
use rand::Rng;

use super::Base;

/// What a test number promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Succeeds,
    Fails(&'static str),
    /// 3-D Secure: decided by the answer given later.
    Challenge,
}

pub const CARDS: [(&str, Expect); 5] = [
    ("4111111111111111", Expect::Succeeds),
    ("4000000000000002", Expect::Fails("card_declined")),
    ("4000000000009995", Expect::Fails("insufficient_funds")),
    ("4000000000000069", Expect::Fails("timeout")),
    ("4000000000003220", Expect::Challenge),
];
pub const ACCOUNTS: [(&str, Expect); 3] = [
    ("6222000000000001", Expect::Succeeds),
    ("6222000000000002", Expect::Fails("account_closed")),
    ("6222000000000069", Expect::Fails("timeout")),
];

/// Callbacks at once, sent twice, and sometimes late (the resolver's status
/// query then decides).
pub fn unruly_settings() -> SimulatorSettings {
    SimulatorSettings {
        callback_delay_ms: 0,
        duplicate_callbacks: true,
        late_callbacks: true,
        challenge_timeout_ms: 3_600_000,
    }
}

pub struct FundingRig {
    pub funding: Arc<Funding>,
    pub cards: Arc<Cards>,
    pub bank_accounts: Arc<BankAccounts>,
    /// The card network's, then core banking's.
    pub simulators: Vec<(Arc<Simulator>, WebhookSecret)>,
}

pub fn funding_rig(base: &Base, policy: FundingPolicy, settings: SimulatorSettings) -> FundingRig {
    let simulator = |kind| {
        let secret = WebhookSecret::generate();
        (
            Arc::new(Simulator::new(
                kind,
                base.sql.clone(),
                base.clock.clone(),
                secret.clone(),
                settings.clone(),
            )),
            secret,
        )
    };
    let simulators = vec![
        simulator(ConnectorKind::CardNetwork),
        simulator(ConnectorKind::CoreBanking),
    ];
    let cards = Arc::new(Cards::new(base.sql.clone(), base.vault.clone()));
    let bank_accounts = Arc::new(BankAccounts::new(base.sql.clone(), base.vault.clone()));
    let funding = Arc::new(Funding::new(
        base.sql.clone(),
        base.engine.clone(),
        base.reader.clone(),
        base.identity.clone(),
        cards.clone(),
        bank_accounts.clone(),
        simulators[0].0.clone(),
        simulators[1].0.clone(),
        base.clock.clone(),
        policy,
    ));
    funding.open_accounts().expect("funding accounts");
    FundingRig {
        funding,
        cards,
        bank_accounts,
        simulators,
    }
}

impl FundingRig {
    /// Links every test card and bank account to the customer, in the order
    /// of `CARDS` and `ACCOUNTS`; answers their ids.
    pub fn link_test_methods(&self, customer_id: &str) -> (Vec<String>, Vec<String>) {
        let cards = CARDS
            .iter()
            .map(|(number, _)| {
                self.cards
                    .link(
                        customer_id,
                        NewCard {
                            number: Secret::new(number.to_string()),
                            expiry_month: 12,
                            expiry_year: 2035,
                            cvv: Secret::new("123".into()),
                            funding: "debit".into(),
                        },
                        (2026, 11),
                        "sim",
                        0,
                    )
                    .expect("card")
                    .id
            })
            .collect();
        let accounts = ACCOUNTS
            .iter()
            .map(|(number, _)| {
                self.bank_accounts
                    .link(
                        customer_id,
                        "ICBC",
                        &Secret::new(number.to_string()),
                        "sim",
                        0,
                    )
                    .expect("account")
                    .id
            })
            .collect();
        (cards, accounts)
    }

    /// Hands over the due callbacks: each delivered with probability 0.8
    /// (the rest are lost), and a delivered one again with probability 0.3.
    pub fn deliver(&self, rng: &mut StdRng) {
        for (simulator, secret) in &self.simulators {
            for callback in simulator.take_due(i64::MAX).expect("callbacks") {
                if !rng.random_bool(0.8) {
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                secret
                    .verify(&callback.signature, callback.body.as_bytes(), now)
                    .expect("signed");
                let body: Callback = serde_json::from_str(&callback.body).expect("callback");
                for _ in 0..if rng.random_bool(0.3) { 2 } else { 1 } {
                    self.funding
                        .apply_callback(simulator.kind(), &body)
                        .expect("apply");
                }
            }
        }
    }
}
