//! The black-box tests of `coffer-api`, one module per area, linked into
//! one test binary: one link instead of 14 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod support;

mod api;
mod backoffice;
mod compliance;
mod encrypted_columns;
mod funding;
mod fuzz_regressions;
mod hardening;
mod merchants;
mod notifications;
mod openapi;
mod p2p;
mod privacy;
mod risk;
mod support_tickets;
mod wallet;
