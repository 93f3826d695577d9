//! The identity service over a real database, a manual clock and simulated
//! SMS and e-mail: what the identity test files share.

#![allow(dead_code)]

use std::sync::Arc;

use coffer_app::ManualClock;
use coffer_core::Timestamp;
use coffer_identity::{Identity, PasskeySettings, PasswordPolicy, Policy};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_store::sql::SqlStore;
use coffer_store::Database;
use coffer_vault::{LocalMasterKey, Vault};

pub struct World {
    pub identity: Identity,
    pub dispatcher: Dispatcher,
    pub sms: Arc<SimulatedTransport>,
    pub email: Arc<SimulatedTransport>,
    pub clock: Arc<ManualClock>,
    pub sql: Arc<SqlStore>,
}

pub fn world(database: &Database) -> World {
    build(database, None)
}

/// A world whose sign-ins pass the risk engine (shipped rules seeded), and
/// that engine, to list evaluations and cases and to blocklist.
pub fn world_with_risk(database: &Database) -> (World, Arc<coffer_risk::Risk>) {
    let mut world = build(database, None);
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([7; 32])),
            world.sql.clone(),
            0,
        )
        .expect("vault"),
    );
    let risk = Arc::new(coffer_risk::Risk::new(
        world.sql.clone(),
        vault.clone(),
        world.clock.clone(),
    ));
    risk.seed_default().expect("seed rules");
    world.identity = Identity::new(
        world.sql.clone(),
        vault,
        world.clock.clone(),
        Policy::default(),
        PasswordPolicy::new(None),
    )
    .with_risk(risk.clone());
    (world, risk)
}

/// A world whose identity service also takes passkeys for this relying party.
pub fn world_with_passkeys(database: &Database, settings: &PasskeySettings) -> World {
    build(database, Some(settings))
}

fn build(database: &Database, passkeys: Option<&PasskeySettings>) -> World {
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
        1_800_000_000_000_000_000,
    )));
    let sql = Arc::new(SqlStore::open(database, 2).expect("sql"));
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([7; 32])),
            sql.clone(),
            0,
        )
        .expect("vault"),
    );
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let email = Arc::new(SimulatedTransport::new(Channel::Email));
    let dispatcher = Dispatcher::new(
        sql.clone(),
        vault.clone(),
        clock.clone(),
        vec![
            sms.clone() as Arc<dyn Transport>,
            email.clone() as Arc<dyn Transport>,
        ],
    );
    let identity = Identity::new(
        sql.clone(),
        vault,
        clock.clone(),
        Policy::default(),
        PasswordPolicy::new(None),
    );
    let identity = match passkeys {
        Some(settings) => identity.with_passkeys(settings).expect("passkeys"),
        None => identity,
    };
    World {
        identity,
        dispatcher,
        sms,
        email,
        clock,
        sql,
    }
}
