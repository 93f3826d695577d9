//! Wallet payments. This first part holds linked payment methods: cards
//! (debit, credit, prepaid, gift), kept to the PCI DSS rules for stored
//! account data.

pub mod cards;

pub use cards::{Brand, CardError, CardView, Cards, NewCard, ENCRYPTED_COLUMNS};
