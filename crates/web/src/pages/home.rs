//! Home: balances per currency, quick actions, recent activity, and what
//! waits for the customer (KYC, requests to pay).

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;

use super::auth::NoticeQuery;
use super::history::activity_list;
use crate::api::{int, list, text};
use crate::ctx::Ctx;
use crate::layout::{notice, page};
use crate::WebState;

/// Quick actions: (path, catalogue key, icon glyph). Simple mode keeps the first four.
const ACTIONS: [(&str, &str, &str); 9] = [
    ("/scan", "action.scan", "⌖"),
    ("/paycode", "action.pay_code", "▦"),
    ("/transfer", "action.transfer", "→"),
    ("/topup", "action.top_up", "+"),
    ("/request", "action.request", "⇄"),
    ("/withdraw", "action.withdraw", "↧"),
    ("/bills", "action.bills", "≡"),
    ("/exchange", "action.exchange", "¤"),
    ("/cards", "action.cards", "▭"),
];

pub async fn home(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if ctx.session.is_none() {
        return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/signin",
        ));
    }
    // `/v1/me` opens the CNY wallet of a customer who has none yet.
    let me = match state.api.get(&ctx.caller, "/v1/me").await {
        Ok(me) => me,
        Err(failure) => return ctx.failure(&failure),
    };
    let wallets = match state.api.get(&ctx.caller, "/v1/me/wallets").await {
        Ok(wallets) => wallets,
        Err(failure) => return ctx.failure(&failure),
    };
    let recent = state
        .api
        .get(&ctx.caller, "/v1/me/activity?limit=5")
        .await
        .unwrap_or_default();
    let incoming = state
        .api
        .get(&ctx.caller, "/v1/me/incoming-payment-requests")
        .await
        .unwrap_or_default();
    let unread_alerts = state
        .api
        .get(&ctx.caller, "/v1/me/notifications/unread-count")
        .await
        .map(|answer| int(&answer, "unread_count"))
        .unwrap_or(0);
    let open_requests = list(&incoming)
        .iter()
        .filter(|r| text(r, "status") == "open")
        .count();
    let cases = state
        .api
        .get(&ctx.caller, "/v1/me/risk/cases")
        .await
        .unwrap_or_default();
    let held = super::held::waiting(&cases).len();
    let customer = me.get("customer").cloned().unwrap_or_default();
    let tier = int(&customer, "kyc_tier");
    let actions = if ctx.simple {
        &ACTIONS[..4]
    } else {
        &ACTIONS[..]
    };
    page(
        &ctx,
        "home.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            h1.greeting { (ctx.tf("home.hello", &[("name", text(&customer, "display_name"))])) }
            @if tier < 1 {
                p.banner { (ctx.t("home.kyc_needed")) " " a href="/kyc" { (ctx.t("home.kyc_link")) } }
            }
            // A held payment waits for the customer before anything else.
            @if held > 0 {
                p.banner.urgent role="alert" {
                    a href="/held" data-testid="held-waiting" { (ctx.tf("home.held_waiting", &[("count", &held.to_string())])) }
                }
            }
            @if unread_alerts > 0 {
                p.banner.alerts {
                    a href="/alerts" data-testid="unread-alerts" { (ctx.tf("home.alerts_waiting", &[("count", &unread_alerts.to_string())])) }
                }
            }
            @if open_requests > 0 {
                p.banner.alerts {
                    a href="/requests" { (ctx.tf("home.requests_waiting", &[("count", &open_requests.to_string())])) }
                }
            }
            section.balances aria-labelledby="balances-title" {
                h2 #balances-title { (ctx.t("home.balances")) }
                ul.wallets {
                    @for wallet in list(&wallets) {
                        li.wallet {
                            span.currency { (text(wallet, "currency")) }
                            span.amount data-testid="balance" { (ctx.money(int(wallet, "available"), text(wallet, "currency"))) }
                            @if int(wallet, "posted") != int(wallet, "available") {
                                span.posted { (ctx.tf("home.posted", &[("amount", &ctx.money(int(wallet, "posted"), text(wallet, "currency")))])) }
                            }
                        }
                    }
                }
            }
            nav.actions aria-label=(ctx.t("home.actions")) {
                @for (path, key, glyph) in actions {
                    a.action href=(path) { span.glyph aria-hidden="true" { (glyph) } span { (ctx.t(key)) } }
                }
            }
            section aria-labelledby="recent-title" {
                h2 #recent-title { (ctx.t("home.recent")) }
                (activity_list(&ctx, list(&recent)))
                p { a href="/history" { (ctx.t("home.all_history")) } }
            }
        },
    )
}
