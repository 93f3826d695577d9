//! The risk crate's one test binary: the pure rules, and the signals the
//! service gathers from stored evaluations on both backends.

mod rules;
mod signals;
