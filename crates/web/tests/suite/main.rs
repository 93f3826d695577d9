//! The black-box tests of `coffer-web`, one module per area, linked into one
//! test binary (each binary carries the whole service).

mod support;

mod bills_fx;
mod customer;
mod held;
mod pages;
mod passkeys;
mod privacy_help;
mod staff;
mod staff_console;
mod support_requests;
