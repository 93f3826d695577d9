//! What the payment simulations share: the services under every payment
//! kind (SQL store, vault, identity with limits out of the way, the engine
//! and a ledger reader, an SMS sink to read registration codes from),
//! registering a customer, the seed list and the final ledger audit.

use std::sync::Arc;

use coffer_app::Engine;
use coffer_core::{Clock, Secret};
use coffer_identity::{Context, Identity, PasswordPolicy, Policy, TierLimits, Tiers};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_vault::{LocalMasterKey, Vault};

pub struct Base {
    pub sql: Arc<SqlStore>,
    pub vault: Arc<Vault>,
    pub identity: Arc<Identity>,
    pub dispatcher: Dispatcher,
    pub sms: Arc<SimulatedTransport>,
    pub engine: Arc<Engine>,
    pub reader: Arc<dyn coffer_store::LedgerReader>,
    pub clock: Arc<dyn Clock>,
}

/// Limits out of the way: the simulations are about money (the HTTP tests
/// cover limits).
pub fn roomy_policy() -> Policy {
    let roomy = TierLimits {
        balance_cap: i64::MAX / 4,
        per_payment: i64::MAX / 4,
        daily: i64::MAX / 4,
        monthly: i64::MAX / 4,
    };
    Policy {
        tiers: Tiers([roomy, roomy, roomy]),
        ..Policy::default()
    }
}

/// The shared services over `database`, reading time from `clock`; the
/// vault's master key is `[master_key; 32]`.
pub fn base(database: &coffer_store::Database, clock: Arc<dyn Clock>, master_key: u8) -> Base {
    let sql = Arc::new(SqlStore::open(database, 4).expect("sql"));
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([master_key; 32])),
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
        roomy_policy(),
        PasswordPolicy::new(None),
    ));
    let engine = Arc::new(Engine::start(database, clock.clone()).expect("engine"));
    let reader: Arc<dyn coffer_store::LedgerReader> = database.open_reader(2).expect("reader");
    Base {
        sql,
        vault,
        identity,
        dispatcher,
        sms,
        engine,
        reader,
        clock,
    }
}

/// Registers a customer by phone (the code read from the SMS sink) and
/// answers the customer id.
pub fn register(base: &Base, phone: &str, name: &str) -> String {
    let context = Context {
        ip: "sim".into(),
        device: "sim".into(),
    };
    let started = base
        .identity
        .start_registration(phone, &context)
        .expect("start");
    base.dispatcher.run_once().expect("dispatch");
    let code = base.sms.last_code(phone).expect("code");
    let (customer, _) = base
        .identity
        .complete_registration(
            &started.registration_id,
            &Secret::new(code),
            &Secret::new("a walk by the lake".into()),
            name,
            coffer_identity::TERMS_VERSION,
            &context,
        )
        .expect("complete");
    customer.id
}

/// The seeds to run: `COFFER_SEED=<n>` replays one, `COFFER_SIM_SEEDS=1,2,3`
/// runs a list, otherwise `defaults`.
pub fn seeds(defaults: &[u64]) -> Vec<u64> {
    if let Ok(seed) = std::env::var("COFFER_SEED") {
        return vec![seed.parse().expect("COFFER_SEED is a number")];
    }
    if let Ok(list) = std::env::var("COFFER_SIM_SEEDS") {
        return list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("COFFER_SIM_SEEDS is a list of numbers")
            })
            .collect();
    }
    defaults.to_vec()
}

/// `coffer verify`'s audit of the ledger must be clean.
pub fn assert_verified(reader: &dyn coffer_store::LedgerReader, context: &str) {
    let report = coffer_app::verify(reader, &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "{context}: {:?}", report.violations);
}

/// P2P with step-up and look-up throttles out of the way (the HTTP tests
/// cover those), charging `fees`.
pub fn unguarded_p2p_policy(fees: coffer_payments::FeeSchedule) -> coffer_payments::P2pPolicy {
    coffer_payments::P2pPolicy {
        fees,
        step_up_threshold: i64::MAX,
        exempt_payment_max: i64::MAX - 1,
        exempt_daily_total_max: i64::MAX / 2,
        exempt_daily_count_max: i64::MAX / 2,
        lookups_per_hour_max: i64::MAX / 2,
        lookups_per_ip_per_hour_max: i64::MAX / 2,
        ..coffer_payments::P2pPolicy::default()
    }
}

/// The templates of every alert in a customer's inbox, sorted.
pub fn inbox(base: &Base, customer_id: &str) -> Vec<String> {
    let mut templates = Vec::new();
    let mut before = None;
    loop {
        let page = base
            .sql
            .run(|db| {
                Ok(coffer_notify::inbox::list(
                    db,
                    &base.vault,
                    customer_id,
                    before,
                    100,
                    false,
                ))
            })
            .expect("sql")
            .expect("inbox");
        templates.extend(page.items.into_iter().map(|item| item.template));
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    templates.sort_unstable();
    templates
}

pub mod funding;
