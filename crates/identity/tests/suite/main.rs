//! The black-box tests of `coffer-identity`, one module per area, linked into
//! one test binary: one link instead of 4 keeps the build's disk use
//! and link time down (each binary carries the whole service).

mod support;

mod identity;
mod kyc;
mod passkeys;
mod profile;
mod sign_in_risk;
