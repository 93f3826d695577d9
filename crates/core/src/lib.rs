//! Coffer's shared vocabulary: money in exact minor units, currencies, validated
//! identifiers and ledger time. Everything here is pure: no I/O, no async, no floats.

pub mod currency;
pub mod id;
pub mod money;
pub mod secret;
pub mod time;

pub use currency::{Currency, CurrencyError, CurrencyRegistry};
pub use id::{Code, IdError, Identifier};
pub use money::{Amount, AmountError};
pub use secret::Secret;
pub use time::{Clock, SystemClock, Timestamp};
