//! The black-box tests of `coffer-payments`, one module per area, linked into
//! one test binary: one link instead of 6 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod campaigns;
mod cards;
mod funding_simulation;
mod merchant_simulation;
mod p2p_simulation;
mod payments_property;
mod support;
mod wallet_simulation;
