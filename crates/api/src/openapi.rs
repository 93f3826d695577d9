//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request/response types themselves, so that it changes
//! with the code. `docs/openapi.json` is a checked-in copy that
//! `tests/openapi.rs` keeps equal to `document()`.

pub mod fields;
pub mod params;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::auth::{SCOPE_LEDGER_READ, SCOPE_LEDGER_WRITE};
use crate::body::BODY_LIMIT_BYTES;
use crate::idempotency::{IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_RETENTION_HOURS};
use crate::passkey_routes;
use crate::support_routes;
use crate::{
    backoffice_routes, compliance_routes, customer_routes, funding_routes, ledger_routes,
    merchant_key_routes, merchant_routes, notification_routes, p2p_routes, privacy_routes,
    risk_routes, staff_routes, wallet_routes,
};

/// The name of the bearer-token security scheme in the document.
pub const SECURITY_SCHEME: &str = "api_key";
/// The customer-session security scheme.
pub const SESSION_SCHEME: &str = "session";

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::healthz,
        crate::readyz,
        crate::metrics_text,
        serve_document,
        serve_reference,
        ledger_routes::open_account,
        ledger_routes::get_account,
        ledger_routes::close_account,
        ledger_routes::entries,
        ledger_routes::create_transfer,
        ledger_routes::create_batch,
        ledger_routes::get_transfer,
        ledger_routes::place_hold,
        ledger_routes::get_hold,
        ledger_routes::capture_hold,
        ledger_routes::release_hold,
        customer_routes::start_registration,
        customer_routes::complete_registration,
        customer_routes::sign_in,
        customer_routes::verify_sign_in,
        customer_routes::sign_out,
        customer_routes::me,
        customer_routes::my_sessions,
        customer_routes::revoke_session,
        customer_routes::revoke_all,
        customer_routes::enroll_totp,
        customer_routes::confirm_totp,
        customer_routes::disable_totp,
        customer_routes::start_step_up,
        customer_routes::verify_step_up,
        customer_routes::profile,
        customer_routes::update_profile,
        customer_routes::start_contact_change,
        customer_routes::confirm_contact_change,
        customer_routes::change_password,
        customer_routes::start_password_reset,
        customer_routes::complete_password_reset,
        customer_routes::verify_identity,
        customer_routes::submit_documents,
        customer_routes::link_card,
        customer_routes::list_cards,
        customer_routes::remove_card,
        customer_routes::start_passkey_registration,
        customer_routes::finish_passkey_registration,
        customer_routes::list_passkeys,
        customer_routes::start_passkey_sign_in,
        customer_routes::verify_passkey_sign_in,
        funding_routes::link_bank_account,
        funding_routes::list_bank_accounts,
        funding_routes::remove_bank_account,
        funding_routes::create_top_up,
        funding_routes::list_top_ups,
        funding_routes::get_top_up,
        funding_routes::authenticate_top_up,
        funding_routes::create_withdrawal,
        funding_routes::quote_withdrawal,
        merchant_key_routes::list_merchant_keys,
        merchant_key_routes::revoke_merchant_key,
        funding_routes::list_withdrawals,
        funding_routes::get_withdrawal,
        funding_routes::card_network_webhook,
        funding_routes::core_banking_webhook,
        p2p_routes::set_handle,
        p2p_routes::get_handle,
        p2p_routes::lookup_payee,
        p2p_routes::create_quote,
        p2p_routes::create_payment,
        p2p_routes::list_payments,
        p2p_routes::get_payment,
        p2p_routes::create_request,
        p2p_routes::list_requests,
        p2p_routes::get_request,
        p2p_routes::list_incoming,
        p2p_routes::decline_request,
        wallet_routes::list_billers,
        wallet_routes::lookup_bill,
        wallet_routes::pay_bill,
        wallet_routes::get_bill_payment,
        wallet_routes::list_wallets,
        wallet_routes::open_wallet,
        wallet_routes::create_quote,
        wallet_routes::get_quote,
        wallet_routes::convert,
        wallet_routes::list_activity,
        wallet_routes::activity_summary,
        wallet_routes::export_activity,
        wallet_routes::get_activity,
        wallet_routes::receipt,
        staff_routes::staff_sign_in,
        staff_routes::find_customer,
        staff_routes::view_customer,
        staff_routes::freeze_customer,
        staff_routes::unlock_customer,
        staff_routes::kyc_queue,
        staff_routes::decide_kyc,
        staff_routes::read_audit,
        staff_routes::propose,
        staff_routes::list_approvals,
        staff_routes::decide_approval,
        staff_routes::reconciliation,
        compliance_routes::list_hits,
        compliance_routes::get_hit,
        compliance_routes::decide_hit,
        compliance_routes::list_watchlists,
        compliance_routes::load_watchlist,
        compliance_routes::run_reports,
        compliance_routes::list_reports,
        compliance_routes::get_report,
        compliance_routes::review_report,
        compliance_routes::export_reports,
        merchant_routes::merchant_categories,
        merchant_routes::apply,
        merchant_routes::my_merchants,
        merchant_routes::my_merchant,
        merchant_routes::create_merchant_key,
        merchant_routes::set_webhook,
        merchant_routes::scan,
        merchant_routes::scan_image,
        merchant_routes::pay,
        merchant_routes::my_payments,
        merchant_routes::my_payment,
        merchant_routes::view_checkout,
        merchant_routes::confirm_checkout,
        merchant_routes::issue_payment_code,
        merchant_routes::merchant_profile,
        merchant_routes::static_qr,
        merchant_routes::create_checkout,
        merchant_routes::charge_code,
        merchant_routes::merchant_payments,
        merchant_routes::merchant_payment,
        merchant_routes::dynamic_qr,
        merchant_routes::refund,
        merchant_routes::merchant_settlements,
        merchant_routes::staff_merchants,
        merchant_routes::staff_merchant,
        merchant_routes::review_merchant,
        merchant_routes::run_settlements,
        merchant_routes::staff_settlements,
        risk_routes::list_cases,
        risk_routes::get_case,
        risk_routes::release_case,
        risk_routes::reject_case,
        risk_routes::escalate_case,
        risk_routes::list_rule_sets,
        risk_routes::create_draft,
        risk_routes::dry_run,
        risk_routes::activate,
        risk_routes::list_blocklist,
        risk_routes::add_blocklist,
        risk_routes::my_cases,
        risk_routes::answer_case,
        notification_routes::list_notifications,
        notification_routes::unread_count,
        notification_routes::mark_read,
        notification_routes::mark_all_read,
        notification_routes::get_preferences,
        notification_routes::update_preferences,
        notification_routes::list_dead_letters,
        notification_routes::requeue_dead_letter,
        notification_routes::webhook_deliveries,
        notification_routes::create_campaign,
        notification_routes::list_campaigns,
        notification_routes::get_campaign,
        privacy_routes::request_export,
        privacy_routes::download_export,
        privacy_routes::erase,
        privacy_routes::list_consents,
        privacy_routes::grant_consent,
        privacy_routes::revoke_consent,
        privacy_routes::access_log,
        privacy_routes::partner_profile,
        privacy_routes::partner_balances,
        privacy_routes::partner_transactions,
        backoffice_routes::search_customers,
        backoffice_routes::customer_360,
        backoffice_routes::queues,
        backoffice_routes::dashboards,
        backoffice_routes::view_settings,
        backoffice_routes::propose_settings,
        passkey_routes::remove_passkey,
        support_routes::open_ticket,
        support_routes::my_tickets,
        support_routes::my_ticket,
        support_routes::customer_reply,
        support_routes::close_ticket,
        support_routes::support_queue,
        support_routes::staff_ticket,
        support_routes::staff_reply,
        support_routes::resolve_ticket,
    ),
    components(
        // Reached only through `fields::batch_transfers`, which the
        // derive cannot follow.
        schemas(crate::error::ErrorBody, ledger_routes::BatchTransferRequest),
        responses(BadRequest, Unauthorized, Forbidden, BodyTooLarge, Internal, Unavailable),
    ),
    modifiers(&Conventions),
    tags(
        (name = "staff", description = "The back office: staff sign-in with a second factor, customer look-up, freezing, KYC review, the audit log, maker-checker approvals and reconciliation."),
        (name = "risk", description = "Real-time risk: cases for held payments and freezes (release, reject, escalate), the blocklist, versioned rule sets with validation, dry-run and activation; the customer's \"was this you?\" answer."),
        (name = "compliance", description = "Compliance officers: the queue of sanctions and watch-list hits (clear or confirm), watch-list versions, and large-value and suspicious-transaction reports (run, review, export as CSV or JSON)."),
        (name = "funding", description = "Money in and out: linked bank accounts, top-ups from a card or bank account, withdrawals to a bank account, each with its status at once."),
        (name = "p2p", description = "Person-to-person payments to a phone number, e-mail or wallet handle: payee look-up with a masked name, quotes with fees, confirmation against the quote, payment requests and split bills."),
        (name = "bills", description = "Bill payment: the catalogue of billers, bill look-up by account reference, payment with the biller's confirmation number."),
        (name = "fx", description = "Wallets in several currencies; FX quotes (mid rate, spread, expiry) and conversions within the quote's life."),
        (name = "history", description = "Transaction history with filters, search and cursor pages; details, receipts, a monthly spending summary by category and a CSV export."),
        (name = "merchants", description = "Merchants: onboarding and review, API keys and signed webhooks for their systems, EMVCo QR codes (static and dynamic), customer-presented payment codes, online checkout, refunds and daily settlement."),
        (name = "webhooks", description = "Signed callbacks from the card network and the core banking system (HMAC-SHA256 over timestamp and body)."),
        (name = "customers", description = "Registration, sign-in, sessions, profile and contact changes, password change and reset, second factors, step-up verification and KYC for the bank's customers."),
        (name = "ledger", description = "Accounts, transfers, linked batches, holds, balances and statements."),
        (name = "notifications", description = "The in-app inbox (read/unread, cursor pages, in English or Chinese) and alert preferences per category and channel; marketing only with explicit consent; security alerts always sent."),
        (name = "operations", description = "Health, readiness and metrics for the people who run Coffer."),
        (name = "reference", description = "This document and its browsable rendering."),
        (name = "privacy", description = "Privacy rights: download my data, delete my account (the ledger kept under a pseudonymous id), consents for partners and the partner API that checks them, and who accessed my data."),
        (name = "support", description = "Customer support: tickets a customer opens (optionally about one of their transactions), the thread with the bank's support staff, and the support queue (permission `handle_support`; every staff read and answer audited with the customer as subject)."),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline, as checked in.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

/// What the info section, the security scheme and the top of `/docs` say:
/// the conventions every route follows, with the limits the code enforces.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Any operation can meet the per-address rate limit.
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.responses.responses.insert(
                    "429".to_string(),
                    error_response(
                        "`rate_limited` (too many requests from this address) or, on sign-in and registration, `too_many_attempts`; see Retry-After.",
                    ),
                );
            }
        }
        openapi.info = InfoBuilder::new()
            .title("Coffer API")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(description()))
            .license(Some(
                LicenseBuilder::new()
                    .name("Apache-2.0")
                    .identifier(Some("Apache-2.0"))
                    .build(),
            ))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("coffer_<16 hex id>_<secret>")
                    .description(Some(format!(
                        "A service API key: `Authorization: Bearer coffer_<16 hex id>_<secret>`, made with `coffer apikey create --name NAME --scopes {SCOPE_LEDGER_READ},{SCOPE_LEDGER_WRITE}`. Reads need `{SCOPE_LEDGER_READ}`, writes `{SCOPE_LEDGER_WRITE}`; each operation lists the scope it needs. A merchant's systems use a key with scope `merchant:<merchant id>` from POST /v1/me/merchants/{{id}}/api-keys for the `/v1/merchant` routes."
                    )))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "staff",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ss_<64 hex>")
                    .description(Some(
                        "A staff session from POST /v1/staff/sessions (password and authenticator code). Each operation names the permission it needs; the role matrix is in docs/SECURITY.md.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cs_<64 hex>")
                    .description(Some(
                        "A customer session from sign-in: `Authorization: Bearer cs_…` (apps), or the HttpOnly `coffer_session` cookie (the web, where a state-changing request must come from this origin).",
                    ))
                    .build(),
            ),
        );
    }
}

fn description() -> String {
    format!(
        "The HTTP API of Coffer, a digital-wallet platform on an exact double-entry ledger, for the bank's own systems.

Conventions that hold on every route:

- **Money** is an integer number of the currency's minor units (`int64`; 10000 CNY is 100.00 yuan), always next to a `currency` code. No amount is ever a decimal or a float, and amounts to move are at least 1.
- **Authentication**: `Authorization: Bearer coffer_<16 hex id>_<secret>`. GET routes need the `{SCOPE_LEDGER_READ}` scope, POST routes `{SCOPE_LEDGER_WRITE}`. Without a valid key: 401 `unauthorized`; without the scope: 403 `forbidden`.
- **Idempotency**: every state-changing POST needs an `Idempotency-Key` header (1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters). A retry with the same key and body returns the first response with `Idempotent-Replayed: true` and never runs twice; the same key with a different body is 422 `idempotency_key_reused`; a retry while the first is still running is 409 `idempotency_key_in_flight`. Keys are remembered for {IDEMPOTENCY_RETENTION_HOURS} hours. Faults on our side (5xx) are not remembered, so a retry runs again.
- **Errors** have one shape, `{{\"error\": {{\"code\", \"message\", \"field\"}}}}`: `code` is stable and machine-readable, `field` names the offending input by its path (`amount`, `transfers[2].currency`, `Idempotency-Key`) when there is one. 4xx is the caller's to fix; 5xx only ever means a fault on our side.
- **Strict input**: request bodies are JSON objects with exactly the documented fields; an unknown, missing or mistyped field is 422 `invalid_field`; a body that is not JSON is 400 `malformed_json`; bodies over {BODY_LIMIT_BYTES} bytes (`BODY_LIMIT_BYTES`) are 413 `body_too_large`.
- **Pages**: lists return `{{\"data\": [...], \"next_cursor\"}}`; pass `next_cursor` back as `cursor` until it is absent.
- **Request ids**: every response carries `X-Request-Id` (the caller's, if it sent a valid one); it is on every log line of the request."
    )
}

/// A response whose body is the one error shape.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// Declares a reusable error response under `components/responses`.
macro_rules! error_responses {
    ($($name:ident => $description:expr;)*) => {$(
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error_response(&$description))
            }
        }
    )*};
}

error_responses! {
    BadRequest => "The request could not be read: `malformed_json` (the body is not JSON), `unreadable_body`, `idempotency_key_required`, `invalid_idempotency_key`.";
    Unauthorized => "`unauthorized`: no API key, or one that is malformed, unknown or revoked.";
    Forbidden => "`forbidden`: the API key lacks the scope this operation needs.";
    BodyTooLarge => format!("`body_too_large`: the body is over {BODY_LIMIT_BYTES} bytes.");
    Internal => "`internal`: a fault on our side, logged with the request id.";
    Unavailable => "`overloaded`, `unavailable` or `storage_unavailable`: the ledger cannot take the request now; retry later with the same Idempotency-Key.";
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "reference",
    summary = "This OpenAPI 3.1 document",
    responses(
        (status = 200, description = "The OpenAPI document, as JSON.", content_type = "application/json", body = Object),
    )
)]
pub(crate) async fn serve_document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document).as_str(),
    )
}

/// `GET /docs`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "reference",
    summary = "Browsable API reference",
    description = "This document rendered as one HTML page by the server itself: no script, no external asset.",
    responses(
        (status = 200, description = "The reference as HTML.", content_type = "text/html", body = String),
    )
)]
pub(crate) async fn serve_reference() -> impl IntoResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page needs nothing but its own inline style.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE.get_or_init(|| crate::docs_page::render(&ApiDoc::openapi()))
            .as_str(),
    )
}
