//! Wallet payments: linked payment methods (cards, bank accounts), the
//! connectors to the card network and the core banking system (with
//! simulators), top-ups and withdrawals through ledger holds, the
//! reconciliation of connector reports against the ledger, P2P payments,
//! payment requests and split bills, the fee schedule and limit counters.
//! simulators), top-ups and withdrawals through ledger holds, and the
//! reconciliation of connector reports against the ledger; bill payment,
//! multi-currency wallets and FX conversion, and the activity feed every
//! payment kind writes beside its record; P2P payments, requests and splits,
//! the fee schedule and limit counters; merchants (onboarding, EMVCo QR
//! codes, payment codes, checkout, refunds, webhooks, daily settlement).

pub mod activity;
mod alerts;
pub use alerts::{LARGE_PAYMENT_ALERT_MINOR, LOW_BALANCE_ALERT_MINOR};
pub mod bank_accounts;
pub mod biller_catalogue;
pub mod bills;
pub mod campaigns;
pub mod cards;
pub mod connectors;
pub mod dashboards;
pub mod emv;
pub mod fees;
pub mod funding;
pub mod fx;
pub mod limits;
pub mod mcc;
pub mod merchant_payments;
pub mod merchants;
pub mod movements;
pub mod p2p;
pub mod qr_image;
pub mod reconcile;
pub mod risk_cases;
pub mod risk_gate;
pub mod settlement;
pub mod simulator;
pub mod webhooks;

pub use bank_accounts::{BankAccountError, BankAccountView, BankAccounts, BANKS};
pub use cards::{Brand, CardError, CardView, Cards, NewCard};

/// Every encrypted column this crate owns (card and bank account numbers,
/// P2P notes, merchants' settlement details).
pub const ENCRYPTED_COLUMNS: [coffer_vault::EncryptedColumn; 6] = [
    cards::ENCRYPTED_COLUMNS[0],
    bank_accounts::ENCRYPTED_COLUMNS[0],
    p2p::ENCRYPTED_COLUMNS[0],
    p2p::ENCRYPTED_COLUMNS[1],
    p2p::ENCRYPTED_COLUMNS[2],
    merchants::ENCRYPTED_COLUMNS[0],
];
pub use activity::{Activity, ActivityKind, ActivityStatus, ActivityView, Category};
pub use bills::{
    Bill, BillError, BillPaymentRequest, BillPaymentView, BillPolicy, BillState, Biller,
    BillerSimulator, Bills, BILLERS,
};
pub use campaigns::{CampaignError, CampaignView, Campaigns, Segment};
pub use connectors::{
    Callback, CardNetwork, ConnectorError, ConnectorKind, CoreBanking, SignatureError,
    WebhookSecret, SIGNATURE_HEADER,
};
pub use dashboards::{Dashboard, Dashboards, FailureRow, FraudIndicators, VolumeRow};
pub use fees::{
    DiscountRule, DiscountScope, FeeOperation, FeeQuote, FeeRule, FeeRuleError, FeeSchedule,
    FeeUsage, Waiver,
};
pub use funding::{
    CallbackOutcome, ClientKey, Funding, FundingError, FundingKind, FundingPolicy, FundingState,
    FundingView, Source, TopUpRequest, Verdict, WithdrawalQuote, WithdrawalRequest,
};
pub use fx::{
    FixedSide, Fx, FxError, FxPolicy, QuoteView as FxQuoteView, RateSource, SimulatedRateSource,
    WalletView,
};
pub use limits::{LimitError, LimitExceeded};
pub use merchant_payments::{
    ChargeRequest, Confirmation as MerchantConfirmation, PaymentCode, PaymentMethod,
    PaymentView as MerchantPaymentView, Preview, RefundView,
};
pub use merchants::{
    MerchantError, MerchantPolicy, MerchantStatus, MerchantView, Merchants, NewMerchant,
};
pub use p2p::{
    Confirmation, GroupView, NewRequest, P2p, P2pError, P2pPolicy, PayeeView, PaymentState,
    PaymentView, QuoteFor, QuoteView, RequestState, RequestView, Shares,
};
pub use reconcile::{Break, BreakKind, Reconciliation};
pub use settlement::SettlementView;
pub use simulator::{SignedCallback, Simulator, SimulatorSettings, CHALLENGE_ANSWER};
pub use webhooks::WebhookTransport;
