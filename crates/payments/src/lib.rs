//! Wallet payments: linked payment methods (cards, bank accounts), the
//! connectors to the card network and the core banking system (with
//! simulators), top-ups and withdrawals through ledger holds, and the
//! reconciliation of connector reports against the ledger; merchants
//! (onboarding, EMVCo QR codes, payment codes, checkout, refunds, webhooks,
//! daily settlement).

pub mod bank_accounts;
pub mod cards;
pub mod connectors;
pub mod emv;
pub mod funding;
pub mod mcc;
pub mod merchant_payments;
pub mod merchants;
pub mod qr_image;
pub mod reconcile;
pub mod settlement;
pub mod simulator;
pub mod webhooks;

pub use bank_accounts::{BankAccountError, BankAccountView, BankAccounts, BANKS};
pub use cards::{Brand, CardError, CardView, Cards, NewCard};

/// Every encrypted column this crate owns (card and bank account numbers).
pub const ENCRYPTED_COLUMNS: [coffer_vault::EncryptedColumn; 3] = [
    cards::ENCRYPTED_COLUMNS[0],
    bank_accounts::ENCRYPTED_COLUMNS[0],
    merchants::ENCRYPTED_COLUMNS[0],
];
pub use connectors::{
    Callback, CardNetwork, ConnectorError, ConnectorKind, CoreBanking, SignatureError,
    WebhookSecret, SIGNATURE_HEADER,
};
pub use funding::{
    CallbackOutcome, ClientKey, Funding, FundingError, FundingKind, FundingPolicy, FundingState,
    FundingView, Source, TopUpRequest, Verdict, WithdrawalRequest,
};
pub use merchant_payments::{
    ChargeRequest, Confirmation, PaymentCode, PaymentMethod, PaymentView, Preview, RefundView,
};
pub use merchants::{
    MerchantError, MerchantPolicy, MerchantStatus, MerchantView, Merchants, NewMerchant,
};
pub use reconcile::{Break, BreakKind, Reconciliation};
pub use settlement::SettlementView;
pub use simulator::{SignedCallback, Simulator, SimulatorSettings, CHALLENGE_ANSWER};
pub use webhooks::WebhookTransport;
