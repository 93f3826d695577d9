//! The black-box tests of `coffer-cli`, one module per area, linked into
//! one test binary: one link instead of 6 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod audit;
mod crash;
mod keys;
mod notify_crash;
mod secrets;
mod serve;
