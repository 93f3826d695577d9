//! The black-box tests of `coffer-vault`, one module per area, linked into
//! one test binary: one link instead of 2 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod rotation;
mod vault;
