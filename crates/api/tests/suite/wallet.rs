//! Bills, FX and history over HTTP, black-box: the real app on port 0 over
//! SQLite and PostgreSQL with the built-in simulators (card network for
//! top-ups, billers, rate source), every flow and decline path, and the
//! ledger's audit at the end of each.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{BillPolicy, FundingPolicy, FxPolicy};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use serde_json::{json, Value};

use crate::support::customer_app::CustomerApp as App;

/// Limits for tier 0 in these tests: roomy balance, tight daily limit.
fn tiers() -> Tiers {
    let tier = TierLimits {
        balance_cap: 200_000,
        per_payment: 60_000,
        daily: 100_000,
        monthly: 1_000_000,
    };
    Tiers([tier, tier, tier])
}

async fn spawn_app(db: TestDatabase) -> App {
    spawn_app_with(db, BillPolicy::default().step_up_threshold).await
}

/// The app with bills needing a step-up from `bill_step_up_threshold` on.
async fn spawn_app_with(db: TestDatabase, bill_step_up_threshold: i64) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                clock.clone(),
                Arc::new(LocalMasterKey::from_bytes([9; 32])),
                transports,
                Policy {
                    tiers: tiers(),
                    ..Policy::default()
                },
                PasswordPolicy::new(None),
            )
            .expect("customer services"),
        );
        let state = AppState::new(
            engine,
            reader,
            service,
            Arc::new(CurrencyRegistry::default()),
            clock,
            &customers,
        )
        .with_funding_policy(FundingPolicy {
            status_query_after_ms: 0,
            ..FundingPolicy::default()
        })
        .with_wallet_policies(
            BillPolicy {
                status_query_after_ms: 0,
                step_up_threshold: bill_step_up_threshold,
                ..BillPolicy::default()
            },
            FxPolicy {
                quote_ttl_ms: QUOTE_TTL_MS,
                ..FxPolicy::default()
            },
        );
        state.open_bank_accounts().expect("bank accounts");
        (state, customers)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = coffer_api::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    App {
        base,
        sms,
        customers,
        state,
        client: reqwest::Client::new(),
        _db: db,
    }
}

/// Short, so that a test can outlive a quote.
const QUOTE_TTL_MS: i64 = 1_500;

impl App {
    async fn resolve_bills(&self) {
        let bills = self.state.bills.clone();
        tokio::task::spawn_blocking(move || bills.resolve_pending())
            .await
            .expect("join")
            .expect("resolve");
    }
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

/// A customer with CNY 1,000.00 topped up by card.
async fn funded_customer(app: &App, phone: &str) -> String {
    let (_, bearer) = app.customer(phone).await;
    let card = app.card(&bearer, "4111 1111 1111 1111").await;
    let (status, top_up) = app
        .post(
            &bearer,
            &format!("tu-{phone}"),
            "/v1/me/top-ups",
            json!({"amount": 100_000, "currency": "CNY", "card_id": card}),
        )
        .await;
    assert_eq!(status, 201, "{top_up}");
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (100_000, 100_000));
    bearer
}

async fn bill(app: &App, bearer: &str, biller: &str, reference: &str) -> (u16, Value) {
    app.get(
        bearer,
        &format!("/v1/me/billers/{biller}/bill?account_reference={reference}"),
    )
    .await
}

async fn bill_flows(app: &App) {
    let bearer = funded_customer(app, "+8613700137001").await;
    let (status, billers) = app.get(&bearer, "/v1/me/billers").await;
    assert_eq!(status, 200);
    let billers = billers["data"].as_array().expect("billers").clone();
    assert_eq!(billers.len(), 6);
    let categories: Vec<&str> = billers
        .iter()
        .filter_map(|b| b["category"].as_str())
        .collect();
    for category in ["electricity", "water", "gas", "phone", "credit_card"] {
        assert!(categories.contains(&category), "{category}");
    }
    assert_eq!(billers[0]["name_zh"], "国家电网 电费");

    // Look-ups and their refusals.
    let (status, body) = bill(app, &bearer, "no-such-biller", "3100204657").await;
    assert_eq!(
        (status, error_of(&body)),
        (404, (Some("unknown_biller"), Some("biller_id")))
    );
    let (status, body) = bill(app, &bearer, "state-grid-electricity", "12ab").await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("account_reference")))
    );
    let (status, body) = bill(app, &bearer, "state-grid-electricity", "3100200000").await;
    assert_eq!((status, error_of(&body).0), (422, Some("no_bill_due")));
    let (status, body) = bill(app, &bearer, "beijing-water", "31000503").await;
    assert_eq!(
        (status, error_of(&body).0),
        (503, Some("biller_unavailable"))
    );
    let (status, body) = bill(app, &bearer, "beijing-water", "31000001").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paid")));
    let (status, due) = bill(app, &bearer, "state-grid-electricity", "3100204657").await;
    assert_eq!(
        (status, due["status"].as_str()),
        (200, Some("due")),
        "{due}"
    );
    assert_eq!(due["account_reference"], "••4657");
    assert!(due["holder_name"].as_str().expect("holder").contains('*'));
    let amount_due = due["amount_due"].as_i64().expect("amount");
    assert!(amount_due > 0);

    // Paying: the wrong amount, then the bill, a replay, a reused key, again.
    let pay = |amount: i64| json!({"biller_id": "state-grid-electricity", "account_reference": "3100 2046 57", "amount": amount, "currency": "CNY"});
    let (status, body) = app
        .post(&bearer, "bp-0", "/v1/me/bill-payments", pay(amount_due + 1))
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("amount_mismatch"), Some("amount")))
    );
    let (status, paid) = app
        .post(&bearer, "bp-1", "/v1/me/bill-payments", pay(amount_due))
        .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (201, Some("succeeded")),
        "{paid}"
    );
    let confirmation = paid["confirmation_number"].as_str().expect("confirmation");
    assert!(confirmation.starts_with("BP"));
    assert_eq!(paid["account_reference"], "••4657");
    let (status, replay) = app
        .post(&bearer, "bp-1", "/v1/me/bill-payments", pay(amount_due))
        .await;
    assert_eq!((status, &replay), (201, &paid));
    let (status, body) = app
        .post(&bearer, "bp-1", "/v1/me/bill-payments", pay(amount_due - 1))
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("idempotency_key_reused"))
    );
    let (status, body) = app
        .post(&bearer, "bp-2", "/v1/me/bill-payments", pay(amount_due))
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("bill_already_paid"))
    );
    assert_eq!(
        app.balance(&bearer).await,
        (100_000 - amount_due, 100_000 - amount_due)
    );
    let spent = amount_due;

    // Refusals that move nothing: unknown biller, bad reference, no bill, biller down.
    for (key, body, expected) in [
        (
            "bp-3",
            json!({"biller_id": "nope", "account_reference": "1", "amount": 100, "currency": "CNY"}),
            (404, "unknown_biller"),
        ),
        (
            "bp-4",
            json!({"biller_id": "china-mobile", "account_reference": "23800138000", "amount": 100, "currency": "CNY"}),
            (422, "invalid_field"),
        ),
        (
            "bp-5",
            json!({"biller_id": "china-mobile", "account_reference": "13800130000", "amount": 100, "currency": "CNY"}),
            (422, "no_bill_due"),
        ),
        (
            "bp-6",
            json!({"biller_id": "china-mobile", "account_reference": "13800130503", "amount": 100, "currency": "CNY"}),
            (503, "biller_unavailable"),
        ),
        (
            "bp-7",
            json!({"biller_id": "china-mobile", "account_reference": "13800138000", "amount": 100, "currency": "USD"}),
            (422, "invalid_field"),
        ),
    ] {
        let (status, answer) = app.post(&bearer, key, "/v1/me/bill-payments", body).await;
        assert_eq!(
            (status, error_of(&answer).0),
            (expected.0, Some(expected.1)),
            "{key}"
        );
    }
    assert_eq!(app.balance(&bearer).await.0, 100_000 - spent);

    // The biller times out: pending with the amount held, then the resolver's
    // status query fails it and the hold is released.
    let (_, due) = bill(app, &bearer, "china-unicom", "13800130504").await;
    let amount = due["amount_due"].as_i64().expect("amount");
    let (status, pending) = app
        .post(
            &bearer,
            "bp-8",
            "/v1/me/bill-payments",
            json!({"biller_id": "china-unicom", "account_reference": "13800130504", "amount": amount, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, pending["status"].as_str()),
        (201, Some("pending")),
        "{pending}"
    );
    assert_eq!(
        app.balance(&bearer).await,
        (100_000 - spent, 100_000 - spent - amount)
    );
    app.resolve_bills().await;
    let path = format!(
        "/v1/me/bill-payments/{}",
        pending["id"].as_str().expect("id")
    );
    let (status, failed) = app.get(&bearer, &path).await;
    assert_eq!(
        (status, failed["status"].as_str(), failed["reason"].as_str()),
        (200, Some("failed"), Some("timeout"))
    );
    assert_eq!(
        app.balance(&bearer).await,
        (100_000 - spent, 100_000 - spent)
    );

    // A credit card takes part of what is due.
    let (status, card) = app
        .post(
            &bearer,
            "bp-9",
            "/v1/me/bill-payments",
            json!({"biller_id": "cmb-credit-card", "account_reference": "6225 8801 1234 5678", "amount": 1_000, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, card["status"].as_str()),
        (201, Some("succeeded")),
        "{card}"
    );

    // Someone with an empty wallet: insufficient funds, shown as failed in history.
    let (_, poor) = app.customer("+8613700137002").await;
    let (_, due) = bill(app, &poor, "beijing-gas", "5500123456").await;
    let (status, body) = app
        .post(
            &poor,
            "bp-10",
            "/v1/me/bill-payments",
            json!({"biller_id": "beijing-gas", "account_reference": "5500123456", "amount": due["amount_due"], "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("insufficient_funds"), Some("amount")))
    );
    let (_, history) = app.get(&poor, "/v1/me/activity").await;
    assert_eq!(history["data"][0]["status"], "failed");
    assert_eq!(history["data"][0]["reason"], "insufficient_funds");
    app.verify_ledger().await;
}

async fn wallets(app: &App, bearer: &str) -> Value {
    let (status, wallets) = app.get(bearer, "/v1/me/wallets").await;
    assert_eq!(status, 200, "{wallets}");
    wallets
}

fn posted(wallets: &Value, currency: &str) -> Option<i64> {
    wallets["data"]
        .as_array()?
        .iter()
        .find(|w| w["currency"] == currency)
        .and_then(|w| w["posted"].as_i64())
}

async fn fx_flows(app: &App) {
    let bearer = funded_customer(app, "+8613700137003").await;
    let (status, usd) = app
        .post(&bearer, "w-1", "/v1/me/wallets", json!({"currency": "JPY"}))
        .await;
    assert_eq!((status, usd["exponent"].as_i64()), (201, Some(0)), "{usd}");
    // /v1/me lists every wallet the customer has, CNY first.
    let (status, me) = app.get(&bearer, "/v1/me").await;
    assert_eq!(status, 200, "{me}");
    let currencies: Vec<&str> = me["wallets"]
        .as_array()
        .expect("wallets")
        .iter()
        .filter_map(|w| w["currency"].as_str())
        .collect();
    assert_eq!(currencies, ["CNY", "JPY"], "{me}");
    let (status, body) = app
        .post(&bearer, "w-2", "/v1/me/wallets", json!({"currency": "CHF"}))
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("currency_not_enabled"), Some("currency")))
    );

    // A quote: mid rate, spread, both amounts rounded for the bank, expiry.
    let (status, quote) = app
        .post(
            &bearer,
            "q-1",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "USD", "sell_amount": 10_000}),
        )
        .await;
    assert_eq!(status, 201, "{quote}");
    assert_eq!(quote["mid_rate"], "0.14038240");
    assert_eq!(quote["spread_bps"], 50);
    let expected = coffer_payments::fx::buy_for_sell(10_000, 14_038_240, 50, 2, 2).expect("buy");
    assert_eq!(quote["buy_amount"].as_i64(), Some(expected));
    assert_eq!(expected, 1_396);
    assert_eq!(quote["status"], "open");
    let (status, body) = app
        .post(
            &bearer,
            "q-2",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "CHF", "sell_amount": 10_000}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("currency_not_enabled"), Some("buy_currency")))
    );
    let (status, body) = app
        .post(
            &bearer,
            "q-3",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "USD", "sell_amount": 10, "buy_amount": 10}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("invalid_field")));

    // Converting: both legs at once; the quote cannot be used again.
    let quote_id = quote["id"].as_str().expect("id").to_string();
    let (status, converted) = app
        .post(
            &bearer,
            "c-1",
            "/v1/me/fx/conversions",
            json!({"quote_id": quote_id}),
        )
        .await;
    assert_eq!(
        (status, converted["status"].as_str()),
        (201, Some("converted")),
        "{converted}"
    );
    let after = wallets(app, &bearer).await;
    assert_eq!(posted(&after, "CNY"), Some(90_000));
    assert_eq!(posted(&after, "USD"), Some(1_396));
    let (status, replay) = app
        .post(
            &bearer,
            "c-1",
            "/v1/me/fx/conversions",
            json!({"quote_id": quote_id}),
        )
        .await;
    assert_eq!((status, &replay), (201, &converted));
    let (status, body) = app
        .post(
            &bearer,
            "c-2",
            "/v1/me/fx/conversions",
            json!({"quote_id": quote_id}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (409, (Some("quote_already_used"), Some("quote_id")))
    );
    let (status, body) = app
        .post(
            &bearer,
            "c-3",
            "/v1/me/fx/conversions",
            json!({"quote_id": "fxq_nope"}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (404, Some("not_found")));

    // Buying a fixed amount of yen costs the exact price rounded up.
    let (status, yen) = app
        .post(
            &bearer,
            "q-4",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "USD", "buy_currency": "JPY", "buy_amount": 100}),
        )
        .await;
    assert_eq!(status, 201, "{yen}");
    let (status, converted) = app
        .post(
            &bearer,
            "c-4",
            "/v1/me/fx/conversions",
            json!({"quote_id": yen["id"]}),
        )
        .await;
    assert_eq!(status, 201, "{converted}");
    let after = wallets(app, &bearer).await;
    assert_eq!(posted(&after, "JPY"), Some(100));
    assert_eq!(
        posted(&after, "USD"),
        Some(1_396 - yen["sell_amount"].as_i64().expect("sell"))
    );

    // Expired.
    let (_, late) = app
        .post(
            &bearer,
            "q-5",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "EUR", "sell_amount": 5_000}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(QUOTE_TTL_MS as u64 + 200)).await;
    let (status, body) = app
        .post(
            &bearer,
            "c-5",
            "/v1/me/fx/conversions",
            json!({"quote_id": late["id"]}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("quote_expired"), Some("quote_id")))
    );

    // More than the wallet holds: refused, nothing moves, history says why.
    let (_, big) = app
        .post(
            &bearer,
            "q-6",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "HKD", "sell_amount": 10_000_000}),
        )
        .await;
    let (status, body) = app
        .post(
            &bearer,
            "c-6",
            "/v1/me/fx/conversions",
            json!({"quote_id": big["id"]}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("insufficient_funds"))
    );
    let unchanged = wallets(app, &bearer).await;
    assert_eq!(posted(&unchanged, "CNY"), Some(90_000));
    assert_eq!(posted(&unchanged, "HKD"), Some(0));

    // The rate source is down.
    let rates = app
        .state
        .connectors
        .rate_simulator
        .clone()
        .expect("simulated");
    rates.set_available(false);
    let (status, body) = app
        .post(
            &bearer,
            "q-7",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "USD", "sell_amount": 100}),
        )
        .await;
    rates.set_available(true);
    assert_eq!((status, error_of(&body).0), (503, Some("rate_unavailable")));
    app.verify_ledger().await;
}

async fn history_flows(app: &App) {
    let bearer = funded_customer(app, "+8613700137004").await;
    for (key, reference) in [
        ("h-1", "3100200100"),
        ("h-2", "3100200200"),
        ("h-3", "3100200300"),
    ] {
        let (_, due) = bill(app, &bearer, "state-grid-electricity", reference).await;
        let (status, paid) = app
            .post(
                &bearer,
                key,
                "/v1/me/bill-payments",
                json!({"biller_id": "state-grid-electricity", "account_reference": reference, "amount": due["amount_due"], "currency": "CNY"}),
            )
            .await;
        assert_eq!(status, 201, "{paid}");
    }
    let (_, quote) = app
        .post(
            &bearer,
            "h-q",
            "/v1/me/fx/quotes",
            json!({"sell_currency": "CNY", "buy_currency": "USD", "sell_amount": 2_000}),
        )
        .await;
    let (status, _) = app
        .post(
            &bearer,
            "h-c",
            "/v1/me/fx/conversions",
            json!({"quote_id": quote["id"]}),
        )
        .await;
    assert_eq!(status, 201);

    let (status, all) = app.get(&bearer, "/v1/me/activity").await;
    assert_eq!(status, 200, "{all}");
    let items = all["data"].as_array().expect("items").clone();
    assert_eq!(items.len(), 5);
    // Newest first: the conversion, then the bills, then the top-up.
    assert_eq!(items[0]["type"], "fx_conversion");
    assert_eq!(items[0]["fx"]["currency"], "USD");
    assert_eq!(items[0]["category"], "exchange");
    assert_eq!(items[4]["type"], "top_up");
    assert_eq!(items[4]["status"], "succeeded");
    assert!(items.iter().all(|i| i["status"] == "succeeded"));

    // Filters.
    for (query, count) in [
        ("type=bill_payment", 3),
        ("category=bills", 3),
        ("category=top_up", 1),
        ("status=failed", 0),
        ("q=state%20grid", 3),
        ("counterparty=%E5%9B%BD%E5%AE%B6%E7%94%B5%E7%BD%91", 3),
        ("currency=CNY&type=fx_conversion", 1),
        ("amount_min=100000", 1),
        ("amount_max=99999&type=top_up", 0),
        ("from=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", 5),
        ("until=2000-01-01T00:00:00Z", 0),
        ("q=100%25", 0),
    ] {
        let (status, page) = app.get(&bearer, &format!("/v1/me/activity?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(
            page["data"].as_array().map(Vec::len),
            Some(count),
            "{query}"
        );
    }
    for (query, field) in [
        ("type=nope", "type"),
        ("category=nope", "category"),
        ("from=yesterday", "from"),
        ("amount_min=-1", "amount_min"),
        ("cursor=zz", "cursor"),
        ("limit=0", "limit"),
        ("unknown=1", "query"),
    ] {
        let (status, body) = app.get(&bearer, &format!("/v1/me/activity?{query}")).await;
        assert_eq!(
            (status, error_of(&body)),
            (422, (Some("invalid_field"), Some(field))),
            "{query}"
        );
    }

    // Cursor pages of two cover everything once, in order.
    let mut seen = Vec::new();
    let mut path = "/v1/me/activity?limit=2".to_string();
    loop {
        let (status, page) = app.get(&bearer, &path).await;
        assert_eq!(status, 200);
        for item in page["data"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/me/activity?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(seen, expected);

    // Details and receipts.
    let bill_item = &items[1];
    let (status, detail) = app
        .get(
            &bearer,
            &format!("/v1/me/activity/{}", bill_item["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!((status, &detail), (200, bill_item));
    let (status, receipt) = app
        .get(
            &bearer,
            &format!(
                "/v1/me/activity/{}/receipt",
                bill_item["id"].as_str().expect("id")
            ),
        )
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert!(receipt["confirmation_number"]
        .as_str()
        .expect("confirmation")
        .starts_with("BP"));
    assert_eq!(receipt["total"], bill_item["amount"]);
    let (status, receipt) = app
        .get(
            &bearer,
            &format!(
                "/v1/me/activity/{}/receipt",
                items[0]["id"].as_str().expect("id")
            ),
        )
        .await;
    assert_eq!(
        (status, receipt["fx"]["currency"].as_str()),
        (200, Some("USD"))
    );
    let (status, _) = app.get(&bearer, "/v1/me/activity/act_nope").await;
    assert_eq!(status, 404);
    // Another customer cannot see it.
    let (_, stranger) = app.customer("+8613700137005").await;
    let (status, _) = app
        .get(
            &stranger,
            &format!(
                "/v1/me/activity/{}/receipt",
                bill_item["id"].as_str().expect("id")
            ),
        )
        .await;
    assert_eq!(status, 404);

    // The month's spending: the three bills, not the top-up or the conversion.
    let bills_total: i64 = items[1..4]
        .iter()
        .map(|i| i["amount"].as_i64().expect("amount"))
        .sum();
    let (status, summary) = app.get(&bearer, "/v1/me/activity/summary").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["categories"],
        json!([{"category": "bills", "currency": "CNY", "amount": bills_total, "count": 3}])
    );
    let (status, body) = app
        .get(&bearer, "/v1/me/activity/summary?month=2026-13")
        .await;
    assert_eq!((status, error_of(&body).1), (422, Some("month")));

    // CSV export: a header and one line per row, decimal amounts.
    let response = app
        .client
        .get(format!(
            "{}/v1/me/activity/export?type=bill_payment",
            app.base
        ))
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/csv"));
    let csv = response.text().await.expect("csv");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("date,id,type,status"));
    assert!(
        lines[1].contains(",bill_payment,succeeded,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("国家电网 电费 State Grid electricity"));
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_on_sqlite() {
    bill_flows(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    bill_flows(&spawn_app(db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fx_on_sqlite() {
    fx_flows(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fx_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    fx_flows(&spawn_app(db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_sqlite() {
    history_flows(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    history_flows(&spawn_app(db).await).await;
}

/// At or above the threshold a bill payment needs a verified step-up bound
/// to its amount and bill; a challenge for anything else does not pass, nor
/// does a used one.
async fn bill_step_up(app: &App) {
    let phone = "+8613700137090";
    let bearer = funded_customer(app, phone).await;
    let (status, due) = bill(app, &bearer, "state-grid-electricity", "3100204657").await;
    assert_eq!(status, 200, "{due}");
    let amount_due = due["amount_due"].as_i64().expect("amount");
    let pay = |challenge: Option<&str>| {
        let mut body = json!({"biller_id": "state-grid-electricity", "account_reference": "3100204657", "amount": amount_due, "currency": "CNY"});
        if let Some(challenge) = challenge {
            body["step_up_challenge_id"] = json!(challenge);
        }
        body
    };
    let (status, body) = app
        .post(&bearer, "bsu-1", "/v1/me/bill-payments", pay(None))
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (
            403,
            (Some("step_up_required"), Some("step_up_challenge_id"))
        ),
        "{body}"
    );
    let challenge = |key: &'static str, amount: i64| {
        let bearer = bearer.clone();
        async move {
            let (status, started) = app
                .post(
                    &bearer,
                    key,
                    "/v1/me/step-up",
                    json!({"operation": "bill_payment", "amount": amount, "currency": "CNY", "payee": "biller:state-grid-electricity:3100204657", "method": "code"}),
                )
                .await;
            assert_eq!(status, 201, "{started}");
            let id = started["challenge_id"].as_str().expect("id").to_string();
            let code = app.code_for(phone).await;
            let (status, verified) = app
                .post(
                    &bearer,
                    &format!("{key}-verify"),
                    &format!("/v1/me/step-up/{id}/verify"),
                    json!({"code": code}),
                )
                .await;
            assert_eq!(status, 200, "{verified}");
            id
        }
    };
    // Bound to another amount: refused, nothing moves.
    let other = challenge("bsu-c1", amount_due - 1).await;
    let (status, body) = app
        .post(&bearer, "bsu-2", "/v1/me/bill-payments", pay(Some(&other)))
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, Some("step_up_required")),
        "{body}"
    );
    assert_eq!(app.balance(&bearer).await, (100_000, 100_000));
    let right = challenge("bsu-c2", amount_due).await;
    let (status, paid) = app
        .post(&bearer, "bsu-3", "/v1/me/bill-payments", pay(Some(&right)))
        .await;
    assert_eq!(
        (status, &paid["status"]),
        (201, &json!("succeeded")),
        "{paid}"
    );
    assert_eq!(
        app.balance(&bearer).await,
        (100_000 - amount_due, 100_000 - amount_due)
    );
    // Used once: another bill needs another challenge.
    let (_, second) = bill(app, &bearer, "state-grid-electricity", "3100204658").await;
    let (status, body) = app
        .post(&bearer, "bsu-4", "/v1/me/bill-payments", json!({"biller_id": "state-grid-electricity", "account_reference": "3100204658", "amount": second["amount_due"], "currency": "CNY", "step_up_challenge_id": right}))
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_step_up_on_sqlite() {
    bill_step_up(&spawn_app_with(TestDatabase::sqlite(), 1).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_step_up_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    bill_step_up(&spawn_app_with(db, 1).await).await;
}
