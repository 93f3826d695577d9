//! The black-box tests of `coffer-app`, one module per area, linked into
//! one test binary: one link instead of 3 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod batch_log;
mod engine;
mod simulation;
