//! `/v1/staff/…` for the back office (staff_routes.rs holds sign-in,
//! freezes, KYC decisions, the audit log and approvals): customer search,
//! the customer 360, the queues overview, dashboards, and the fee schedule
//! and tier limits changed at runtime by maker-checker.
//!
//! Everything a staff member sees of a customer here is masked unless
//! their role has `view_personal_data`, and every look is in the audit log
//! with the customer as subject.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::Timestamp;
use coffer_identity::{
    Approval, Context, CustomerSearch, Permission, SensitiveAction, SettingError,
    TIER_LIMITS_SETTING,
};
use coffer_payments::fees::{schedule_from_json, schedule_to_json, FEES_SETTING};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::{parse, RawBody};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, identity_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::staff_routes::StaffSession;
use crate::AppState;

/// Activity rows the 360 shows (the feed's own routes page further).
const RECENT_ACTIVITY_MAX: i64 = 20;
/// Default and largest page of a search.
const SEARCH_PAGE_DEFAULT: i64 = 20;
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/staff/customer-search", search_customers)
        .get("/v1/staff/customers/{id}/360", customer_360)
        .get("/v1/staff/queues", queues)
        .get("/v1/staff/dashboards", dashboards)
        .get("/v1/staff/settings/{id}", view_settings)
        .post("/v1/staff/settings/{id}/proposals", propose_settings)
}

impl From<SettingError> for ApiError {
    fn from(error: SettingError) -> ApiError {
        ApiError::invalid(&error.field, error.message)
    }
}

fn time(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

// ---- search ------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    /// A phone number (+86…) or e-mail address, matched exactly.
    contact: Option<String>,
    /// A whole name (display or legal), matched exactly; case, spacing and
    /// word order do not matter. No partial names (see the README).
    name: Option<String>,
    /// A customer id.
    id: Option<String>,
    /// The last four digits of a linked card.
    card_last4: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 50 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CustomerHitView {
    id: String,
    /// Masked (`张*明`) unless the role has `view_personal_data`.
    name: String,
    /// Masked (`+86*******8000`) unless the role has `view_personal_data`.
    contact: String,
    kyc_tier: i64,
    status: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SearchResponse {
    data: Vec<CustomerHitView>,
    /// Pass as `after` for the next page; null on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/v1/staff/customer-search", tag = "staff", summary = "Search customers",
    description = "By exactly one of `contact`, `name`, `id` or `card_last4`. Contacts and names are matched through blind indexes of their normalized form (nothing is decrypted to search), so only whole values match. Masked unless the role has `view_personal_data`. Needs `view_customers`. Audited (what was searched by, not the value).",
    params(SearchQuery),
    responses(
        (status = 200, description = "A page of customers.", body = SearchResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn search_customers(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ViewCustomers)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => SEARCH_PAGE_DEFAULT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=coffer_identity::SEARCH_PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "a whole number from 1 to 50"))?,
    };
    let after = query.after.clone().unwrap_or_default();
    let given = [
        query.contact.is_some(),
        query.name.is_some(),
        query.id.is_some(),
        query.card_last4.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::invalid(
            "query",
            "exactly one of contact, name, id, card_last4",
        ));
    }
    let search = if let Some(contact) = query.contact {
        CustomerSearch::Contact(contact)
    } else if let Some(name) = query.name {
        CustomerSearch::Name(name)
    } else if let Some(id) = query.id {
        CustomerSearch::Id(id)
    } else {
        let last4 = query.card_last4.unwrap_or_default();
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid("card_last4", "four digits"));
        }
        let cards = state.cards.clone();
        let after = after.clone();
        let ids =
            blocking_call(move || cards.customers_with_last4(&last4, &after, limit + 1)).await?;
        CustomerSearch::Ids {
            ids,
            label: "card_last4".into(),
        }
    };
    let identity = state.identity.clone();
    let page = identity_call(move || {
        identity.staff_search_customers(
            &session.info,
            &search,
            Some(after.as_str()),
            limit,
            &session.context,
        )
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &SearchResponse {
            data: page
                .customers
                .into_iter()
                .map(|c| CustomerHitView {
                    id: c.id,
                    name: c.name,
                    contact: c.contact,
                    kyc_tier: c.tier,
                    status: c.status,
                    created_at: time(c.created_at),
                })
                .collect(),
            next: page.next,
        },
    ))
}

// ---- customer 360 ------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileView {
    id: String,
    /// In clear only with `view_personal_data`.
    display_name: String,
    contact: String,
    /// `phone` or `email`.
    contact_kind: &'static str,
    /// Whether names and contact above are in clear.
    personal_data_shown: bool,
    /// `active` or `frozen`.
    status: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KycIdentityBody {
    id_type: String,
    /// Last four characters only, whatever the role.
    id_number: String,
    /// The legal name, in clear only with `view_personal_data`.
    full_name: String,
    verified_at: String,
    provider_reference: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KycReviewBody {
    id: String,
    target_tier: i64,
    reason: String,
    state: String,
    created_at: String,
    decided_at: Option<String>,
    decided_by: Option<String>,
    note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KycBody {
    tier: i64,
    identity: Option<KycIdentityBody>,
    /// Every review, newest first: pending ones are in the KYC queue.
    reviews: Vec<KycReviewBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WalletBalanceBody {
    account_id: String,
    currency: String,
    /// Minor units.
    posted: i64,
    available: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityRowBody {
    id: String,
    kind: String,
    direction: String,
    status: String,
    reason: Option<String>,
    counterparty: String,
    amount: i64,
    currency: String,
    fee: i64,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LinkedCardBody {
    id: String,
    brand: &'static str,
    /// `•••• 1111`: the number is never shown.
    number: String,
    expiry: String,
    status: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LinkedBankAccountBody {
    id: String,
    bank_code: &'static str,
    bank_name: &'static str,
    number: String,
    status: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StaffSessionOfCustomerBody)]
pub(crate) struct SessionBody {
    id: String,
    device: String,
    ip: String,
    created_at: String,
    last_seen_at: String,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LimitsInForceBody {
    /// Minor units of CNY.
    balance_cap: i64,
    per_payment: i64,
    daily: i64,
    monthly: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LimitOverrideBody {
    balance_cap: Option<i64>,
    per_payment: Option<i64>,
    daily: Option<i64>,
    monthly: Option<i64>,
    approval_id: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StaffLimitsBody)]
pub(crate) struct LimitsBody {
    /// The tier's limits with any override applied: what payments are held to.
    in_force: LimitsInForceBody,
    #[serde(rename = "override")]
    limit_override: Option<LimitOverrideBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryBody {
    at: String,
    actor: String,
    action: String,
    outcome: String,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Customer360 {
    profile: ProfileView,
    kyc: KycBody,
    wallets: Vec<WalletBalanceBody>,
    /// The newest rows of the customer's activity feed.
    recent_activity: Vec<ActivityRowBody>,
    cards: Vec<LinkedCardBody>,
    bank_accounts: Vec<LinkedBankAccountBody>,
    /// Sign-in sessions: the devices and addresses the customer used.
    sessions: Vec<SessionBody>,
    limits: LimitsBody,
    /// Sign-in locked after failed attempts until then (null: not locked).
    locked_until: Option<String>,
    /// Freezes, unfreezes, unlocks, KYC and security events, staff views:
    /// the newest audit records about the customer.
    history: Vec<HistoryBody>,
    /// The risk engine's latest decisions about the customer, payments and
    /// sign-ins (id, kind, amount, decision, score, reasons, at), newest first.
    #[schema(value_type = Option<Vec<Object>>)]
    risk_history: Option<serde_json::Value>,
}

/// The customer's last risk evaluations (payments, withdrawals, sign-ins), newest first.
async fn risk_history(
    state: &AppState,
    customer_id: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let risk = state.risk.risk.clone();
    let customer = customer_id.to_string();
    let evaluations =
        blocking_call(move || risk.evaluations_of(&customer, RISK_HISTORY_ROWS)).await?;
    let rows: Vec<serde_json::Value> = evaluations
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id,
                "kind": e.kind,
                "amount": e.amount,
                "decision": e.decision,
                "score": e.score,
                "reasons": e.reasons.iter().map(|r| serde_json::json!({"rule_id": r.rule_id, "text": r.text})).collect::<Vec<_>>(),
                "at": coffer_core::Timestamp::from_nanos(e.at).to_rfc3339(),
            })
        })
        .collect();
    Ok(Some(serde_json::Value::Array(rows)))
}

/// Risk evaluations the 360 shows.
const RISK_HISTORY_ROWS: i64 = 20;

#[utoipa::path(get, path = "/v1/staff/customers/{id}/360", tag = "staff", summary = "Customer 360",
    description = "Profile, KYC (tier, verified identity, reviews), wallet balances per currency from the ledger, recent activity, linked cards and bank accounts (masked), sessions and devices, limits in force and overrides, lock-out, freezes and other history from the audit log. Names and contact in clear only with `view_personal_data`. Needs `view_customers`. Every view is audited with the customer as subject.",
    params(("id" = String, Path, description = "The customer id.")),
    responses(
        (status = 200, description = "Everything staff may see of the customer.", body = Customer360),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn customer_360(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ViewCustomers)?;
    let identity = state.identity.clone();
    let customer_id = id.clone();
    let record = identity_call(move || {
        identity.staff_customer_record(&session.info, &customer_id, &session.context)
    })
    .await?;
    let fx = state.fx.clone();
    let customer_id = id.clone();
    let wallets = blocking_call(move || fx.wallets(&customer_id)).await?;
    let activity = state.activity.clone();
    let customer_id = id.clone();
    let recent = blocking_call(move || {
        activity.list(
            &customer_id,
            &coffer_payments::activity::Filter::default(),
            None,
            RECENT_ACTIVITY_MAX,
        )
    })
    .await?;
    let cards = state.cards.clone();
    let customer_id = id.clone();
    let cards = blocking_call(move || cards.list(&customer_id)).await?;
    let bank_accounts = state.bank_accounts.clone();
    let customer_id = id.clone();
    let bank_accounts = blocking_call(move || bank_accounts.list(&customer_id)).await?;
    let risk_history = risk_history(&state, &id).await?;
    let body = Customer360 {
        profile: ProfileView {
            id: record.id,
            display_name: record.display_name,
            contact: record.contact,
            contact_kind: record.contact_kind,
            personal_data_shown: record.personal_data_shown,
            status: record.status,
            created_at: time(record.created_at),
        },
        kyc: KycBody {
            tier: record.tier,
            identity: record.kyc.map(|k| KycIdentityBody {
                id_type: k.id_type,
                id_number: k.id_number_masked,
                full_name: k.full_name,
                verified_at: time(k.verified_at),
                provider_reference: k.provider_reference,
            }),
            reviews: record
                .kyc_reviews
                .into_iter()
                .map(|r| KycReviewBody {
                    id: r.id,
                    target_tier: r.target_tier,
                    reason: r.reason,
                    state: r.state,
                    created_at: time(r.created_at),
                    decided_at: r.decided_at.map(time),
                    decided_by: r.decided_by,
                    note: r.note,
                })
                .collect(),
        },
        wallets: wallets
            .into_iter()
            .map(|w| WalletBalanceBody {
                account_id: w.account_id,
                currency: w.currency,
                posted: w.posted,
                available: w.available,
            })
            .collect(),
        recent_activity: recent
            .items
            .into_iter()
            .map(|a| ActivityRowBody {
                id: a.id,
                kind: a.kind,
                direction: a.direction,
                status: a.status,
                reason: a.reason,
                counterparty: a.counterparty,
                amount: a.amount,
                currency: a.currency,
                fee: a.fee,
                created_at: time(a.created_at),
            })
            .collect(),
        cards: cards
            .into_iter()
            .map(|c| LinkedCardBody {
                id: c.id,
                brand: c.brand,
                number: format!("•••• {}", c.last4),
                expiry: format!("{:02}/{}", c.expiry_month, c.expiry_year),
                status: c.status,
            })
            .collect(),
        bank_accounts: bank_accounts
            .into_iter()
            .map(|b| LinkedBankAccountBody {
                number: format!("•••• {}", b.last4),
                id: b.id,
                bank_code: b.bank_code,
                bank_name: b.bank_name,
                status: b.status,
            })
            .collect(),
        sessions: record
            .sessions
            .into_iter()
            .map(|s| SessionBody {
                id: s.id,
                device: s.device,
                ip: s.ip,
                created_at: time(s.created_at),
                last_seen_at: time(s.last_seen_at),
                state: s.state,
            })
            .collect(),
        limits: LimitsBody {
            in_force: LimitsInForceBody {
                balance_cap: record.limits.balance_cap,
                per_payment: record.limits.per_payment,
                daily: record.limits.daily,
                monthly: record.limits.monthly,
            },
            limit_override: record.limit_override.map(|o| LimitOverrideBody {
                balance_cap: o.balance_cap,
                per_payment: o.per_payment,
                daily: o.daily,
                monthly: o.monthly,
                approval_id: o.approval_id,
                created_at: time(o.created_at),
            }),
        },
        locked_until: record.locked_until.map(time),
        history: record
            .history
            .into_iter()
            .map(|r| HistoryBody {
                at: time(r.at),
                actor: r.actor,
                action: r.action,
                outcome: r.outcome,
                detail: r.detail,
            })
            .collect(),
        risk_history,
    };
    Ok(json_response(StatusCode::OK, &body))
}

// ---- queues ------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct QueueView {
    /// `kyc_reviews`, `pending_approvals`, `merchant_reviews`, `pending_fundings`,
    /// `risk_cases`, `risk_cases_escalated`, `compliance_hits`, `compliance_reports`,
    /// `support_tickets` (open: waiting for the bank).
    name: &'static str,
    count: i64,
    /// When the oldest waiting item was created (null when empty).
    oldest: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QueuesResponse {
    data: Vec<QueueView>,
}

#[utoipa::path(get, path = "/v1/staff/queues", tag = "staff", summary = "Queues overview",
    description = "Every staff queue with how many items wait and when the oldest was created: KYC reviews, pending maker-checker approvals, merchant reviews, top-ups and withdrawals the connectors have not answered (what reconciliation reports as stuck), open and escalated risk cases, pending screening hits, regulatory reports awaiting review, and support tickets waiting for the bank. Needs `view_dashboards`.",
    responses(
        (status = 200, description = "The queues.", body = QueuesResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn queues(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ViewDashboards)?;
    // Each crate that owns a queue reports it; a new queue is a new line.
    let identity = state.identity.clone();
    let mut all = identity_call(move || identity.queue_summaries()).await?;
    let dashboards = coffer_payments::Dashboards::new(state.sql.clone());
    all.extend(blocking_call(move || dashboards.queue_summaries()).await?);
    let risk = state.risk.risk.clone();
    all.extend(blocking_call(move || risk.queue_summaries()).await?);
    let compliance = state.compliance.clone();
    all.extend(blocking_call(move || compliance.queue_summaries()).await?);
    let support = state.support.clone();
    all.extend(blocking_call(move || support.queue_summaries()).await?);
    Ok(json_response(
        StatusCode::OK,
        &QueuesResponse {
            data: all
                .into_iter()
                .map(|(name, count, oldest)| QueueView {
                    name,
                    count,
                    oldest: oldest.map(time),
                })
                .collect(),
        },
    ))
}

// ---- dashboards --------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardQuery {
    /// First day, `YYYY-MM-DD` (UTC; default 6 days before `until`).
    from: Option<String>,
    /// Last day, inclusive, `YYYY-MM-DD` (UTC; default today). At most 366 days.
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VolumeBody {
    day: String,
    /// `top_up`, `withdrawal`, `p2p`, `bill_payment`, `merchant_payment`, `merchant_refund`, `fx_conversion`.
    operation: &'static str,
    currency: String,
    count: i64,
    /// Minor units of `currency`.
    amount: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FailureBody {
    operation: &'static str,
    succeeded: i64,
    failed: i64,
    /// failed ÷ (succeeded + failed) in basis points, rounded down.
    failure_rate_bps: i64,
    /// Failures by reason.
    #[schema(value_type = Object)]
    reasons: std::collections::BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FraudBody {
    frozen_customers_now: i64,
    freezes: i64,
    step_ups_started: i64,
    step_ups_verified: i64,
    /// Merchant refunds ÷ merchant payments by amount, per currency, in basis points.
    #[schema(value_type = Object)]
    refund_ratio_bps: std::collections::BTreeMap<String, i64>,
    /// P2P payments that needed a verified step-up ÷ all P2P payments, in basis points.
    p2p_step_up_rate_bps: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DashboardResponse {
    from: String,
    until: String,
    volumes: Vec<VolumeBody>,
    failures: Vec<FailureBody>,
    fraud: FraudBody,
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_day(field: &str, text: &str) -> Result<i64, ApiError> {
    Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"))
        .filter(|_| text.len() == 10)
        .map(|t| t.as_nanos().div_euclid(NANOS_PER_DAY))
        .ok_or_else(|| ApiError::invalid(field, "a day as YYYY-MM-DD"))
}

#[utoipa::path(get, path = "/v1/staff/dashboards", tag = "staff", summary = "Dashboards",
    description = "Over whole UTC days: volumes (count and amount per currency, operation type and day; succeeded operations only), failure rates by operation and reason, and fraud indicators (frozen customers, freezes, step-ups, merchant refund ratio). Integer minor units; rates in basis points. Needs `view_dashboards`.",
    params(DashboardQuery),
    responses(
        (status = 200, description = "The figures.", body = DashboardResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`from`, `until`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn dashboards(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<DashboardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ViewDashboards)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let today = state.clock.now().as_nanos().div_euclid(NANOS_PER_DAY);
    let until = match query.until.as_deref() {
        None => today,
        Some(text) => parse_day("until", text)?,
    };
    let from = match query.from.as_deref() {
        None => until - 6,
        Some(text) => parse_day("from", text)?,
    };
    if from > until || until - from >= coffer_payments::dashboards::DASHBOARD_RANGE_DAYS_MAX {
        return Err(ApiError::invalid(
            "from",
            "from must be on or before until, at most 366 days apart",
        ));
    }
    let dashboards = coffer_payments::Dashboards::new(state.sql.clone());
    let (from_nanos, until_nanos) = (from * NANOS_PER_DAY, (until + 1) * NANOS_PER_DAY);
    let figures = blocking_call(move || dashboards.dashboard(from_nanos, until_nanos)).await?;
    let actor = session.info.actor();
    let (sql, ip, now) = (
        state.sql.clone(),
        session.context.ip.clone(),
        state.clock.now().as_nanos(),
    );
    let detail = format!(
        "{} to {}",
        coffer_payments::dashboards::day_text(from),
        coffer_payments::dashboards::day_text(until)
    );
    blocking_call(move || {
        sql.transaction(|db| {
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: &actor,
                    action: "dashboards_viewed",
                    subject: None,
                    ip: &ip,
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &detail,
                },
            )
        })
        .map_err(ApiError::internal)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &DashboardResponse {
            from: coffer_payments::dashboards::day_text(from),
            until: coffer_payments::dashboards::day_text(until),
            volumes: figures
                .volumes
                .into_iter()
                .map(|v| VolumeBody {
                    day: v.day,
                    operation: v.operation,
                    currency: v.currency,
                    count: v.count,
                    amount: v.amount,
                })
                .collect(),
            failures: figures
                .failures
                .into_iter()
                .map(|f| FailureBody {
                    operation: f.operation,
                    succeeded: f.succeeded,
                    failed: f.failed,
                    failure_rate_bps: f.failure_rate_bps,
                    reasons: f.reasons,
                })
                .collect(),
            fraud: FraudBody {
                frozen_customers_now: figures.fraud.frozen_customers_now,
                freezes: figures.fraud.freezes,
                step_ups_started: figures.fraud.step_ups_started,
                step_ups_verified: figures.fraud.step_ups_verified,
                refund_ratio_bps: figures.fraud.refund_ratio_bps,
                p2p_step_up_rate_bps: figures.fraud.p2p_step_up_rate_bps,
            },
        },
    ))
}

// ---- settings: fees and tier limits ------------------------------------------------

/// The settings kinds staff may change, each validated by the crate that
/// owns it; a new kind (the biller catalogue) is a new arm here.
fn validated(kind: &str, document: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    match kind {
        FEES_SETTING => Ok(schedule_to_json(&schedule_from_json(document)?)),
        TIER_LIMITS_SETTING => Ok(coffer_identity::tiers_to_json(
            &coffer_identity::tiers_from_json(document)?,
        )),
        coffer_payments::biller_catalogue::BILLERS_SETTING => {
            Ok(coffer_payments::biller_catalogue::to_json(
                &coffer_payments::biller_catalogue::from_json(document)?,
            ))
        }
        _ => Err(ApiError::not_found("settings kind")),
    }
}

/// The version in force of `kind` and its document.
async fn current_settings(
    state: &AppState,
    kind: &str,
) -> Result<(i64, serde_json::Value), ApiError> {
    match kind {
        FEES_SETTING => {
            let (sql, seed) = (state.sql.clone(), state.p2p.policy().fees.clone());
            let (version, schedule) =
                blocking_call(move || sql.run(|db| coffer_payments::fees::current(db, &seed)))
                    .await?;
            Ok((version, schedule_to_json(&schedule)))
        }
        TIER_LIMITS_SETTING => {
            let identity = state.identity.clone();
            let (version, tiers) = identity_call(move || identity.current_tiers()).await?;
            Ok((version, coffer_identity::tiers_to_json(&tiers)))
        }
        coffer_payments::biller_catalogue::BILLERS_SETTING => {
            let sql = state.sql.clone();
            let (version, catalogue) =
                blocking_call(move || sql.run(coffer_payments::biller_catalogue::current)).await?;
            Ok((
                version,
                coffer_payments::biller_catalogue::to_json(&catalogue),
            ))
        }
        _ => Err(ApiError::not_found("settings kind")),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsVersionBody {
    version: i64,
    approval_id: String,
    maker: String,
    checker: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsView {
    /// `fees`, `tier_limits` or `billers`.
    kind: String,
    /// The version in force; 0: the configuration file's values.
    version: i64,
    /// The document in force (the shape a proposal sends).
    #[schema(value_type = Object)]
    settings: serde_json::Value,
    /// Approved versions, newest first.
    history: Vec<SettingsVersionBody>,
}

#[utoipa::path(get, path = "/v1/staff/settings/{id}", tag = "staff", summary = "Fee schedule or tier limits in force",
    description = "`fees`: one rule per operation (`p2p`, `withdrawal`, `merchant_payment`, `bill_payment`: `fixed`, `percent_bps`, `minimum`, `maximum` (null: none), `free_per_month`, `first_free`), and `merchant_discounts`: the merchant discount rate rules over the shipped MCC table (`[{scope: merchant|mcc, id, percent_bps, minimum, maximum}]`). `billers`: `{\"billers\": [{id, name_zh, name_en, category, reference_digits, reference_prefix, reference_format, partial_payment, enabled}]}`, the whole catalogue (add one by listing it, disable with `enabled: false`). `tier_limits`: `{\"tiers\": [{balance_cap, per_payment, daily, monthly} × 3]}` in minor units of CNY. Version 0 is the configuration file's; each approved change adds one. Needs `manage_settings`, `approve_sensitive` or `view_dashboards`.",
    params(("id" = String, Path, description = "`fees`, `tier_limits` or `billers`.")),
    responses(
        (status = 200, description = "The settings in force and their versions.", body = SettingsView),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such kind.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn view_settings(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(kind): PathId,
) -> Result<Response, ApiError> {
    if ![
        Permission::ManageSettings,
        Permission::ApproveSensitive,
        Permission::ViewDashboards,
    ]
    .into_iter()
    .any(|p| session.info.may(p))
    {
        return Err(
            coffer_identity::IdentityError::Forbidden(Permission::ManageSettings.as_str()).into(),
        );
    }
    let (version, settings) = current_settings(&state, &kind).await?;
    let identity = state.identity.clone();
    let history_kind = kind.clone();
    let history = identity_call(move || identity.setting_versions(&history_kind, 50)).await?;
    Ok(json_response(
        StatusCode::OK,
        &SettingsView {
            kind,
            version,
            settings,
            history: history
                .into_iter()
                .map(|v| SettingsVersionBody {
                    version: v.version,
                    approval_id: v.approval_id,
                    maker: v.maker,
                    checker: v.checker,
                    created_at: time(v.created_at),
                })
                .collect(),
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsProposalRequest {
    /// The version the change is written against (from the GET): approving
    /// fails with `conflict` if another change was approved meanwhile.
    base_version: i64,
    /// The whole new document, in the shape the GET returns.
    #[schema(value_type = Object)]
    settings: serde_json::Value,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsProposalView {
    approval_id: String,
    kind: String,
    base_version: i64,
    /// `pending` until a second staff member decides it at
    /// `POST /v1/staff/approvals/{id}/decide`.
    state: String,
    maker: String,
}

#[utoipa::path(post, path = "/v1/staff/settings/{id}/proposals", tag = "staff", summary = "Propose a fee or limit change",
    description = "Maker-checker: the whole new document is validated now (every error names its field, e.g. `settings.p2p.percent_bps`) and takes effect, without a restart, when a second staff member with `approve_sensitive` approves it at `POST /v1/staff/approvals/{id}/decide`; never the maker. Needs `manage_settings`. Audited.",
    params(("id" = String, Path, description = "`fees`, `tier_limits` or `billers`."), IdempotencyKey),
    request_body = SettingsProposalRequest,
    responses(
        (status = 201, description = "Proposed.", body = SettingsProposalView),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such kind.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict`: `base_version` is not the version in force; `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (the document's field by path, `reason`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn propose_settings(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(kind): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session.info.require(Permission::ManageSettings) {
        return ApiError::from(error).into_response();
    }
    let principal = crate::auth::Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    };
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("settings:{kind}"),
        &body,
        || async {
            let request: SettingsProposalRequest = parse(&body)?;
            let document = validated(&kind, &request.settings)?;
            let (version, _) = current_settings(&state, &kind).await?;
            if request.base_version != version {
                return Err(ApiError::from(coffer_identity::IdentityError::Conflict(
                    "base_version is not the version in force; read the settings again",
                ))
                .field("base_version"));
            }
            let params = serde_json::json!({
                "base_version": request.base_version,
                "settings": document,
            })
            .to_string();
            let identity = state.identity.clone();
            let (session, kind) = (session.clone(), kind.clone());
            let approval = identity_call(move || {
                let id = identity.propose(
                    &session.info,
                    SensitiveAction::ChangeSettings,
                    &kind,
                    &params,
                    &request.reason,
                    &session.context,
                )?;
                identity.approval(&id)
            })
            .await?;
            to_json(
                StatusCode::CREATED,
                &SettingsProposalView {
                    approval_id: approval.id,
                    kind: approval.subject,
                    base_version: request.base_version,
                    state: approval.state,
                    maker: approval.maker,
                },
            )
        },
    )
    .await
}

/// Carries out an approved `change_settings` proposal (called by the
/// approvals route): the document is validated again by its owner, then
/// stored as the next version. In force from the next payment on, on every
/// instance, since payments read the version in force in their transaction.
pub(crate) async fn apply_settings_change(
    state: &AppState,
    approval: &Approval,
    context: &Context,
) -> Result<String, ApiError> {
    let (_, document) = coffer_identity::setting_proposal(&approval.params)?;
    let document = validated(&approval.subject, &document)?;
    let identity = state.identity.clone();
    let (approval, context) = (approval.clone(), context.clone());
    let kind = approval.subject.clone();
    let version =
        identity_call(move || identity.apply_setting_change(&approval, &document, &context))
            .await?;
    Ok(format!("{kind} version {version} in force"))
}
