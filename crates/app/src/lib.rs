//! Coffer's use cases. For now the ledger engine: group commit over the pure
//! ledger and a storage writer. Domain services (customers, payments…) stand
//! on it in later layers.

pub mod engine;
pub mod stats;

pub use engine::{
    system_clock, Engine, EngineError, ManualClock, Recorded, Recording, Render,
    QUEUE_CAPACITY_DEFAULT,
};
pub use stats::EngineStats;
pub mod verify;
pub use verify::verify;
