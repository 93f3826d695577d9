//! What the identity tests share: a wired-up world on either backend and a
//! software passkey authenticator (also used by the API tests).

pub mod authenticator;
pub mod world;
