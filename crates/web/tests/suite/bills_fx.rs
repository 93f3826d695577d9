//! Paying a bill and exchanging currency through the customer app's pages,
//! against the billers' and rates' simulators: what is due is shown
//! before paying, the wallet pays exactly that, and a quote's amounts are
//! exactly what the conversion moves.

use reqwest::Method;
use serde_json::Value;

use crate::support::{
    available, form_fields, fund, post_form, sign_up, spawn_web, through_step_up,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_is_looked_up_then_paid_from_the_app() {
    let web = spawn_web().await;
    let phone = "+8613800138511";
    let (mut customer, _) = sign_up(&web, phone, "沈一").await;
    fund(&web, &customer, 500_000).await;

    let (status, page, _) = web.get(&mut customer, "/bills").await;
    assert_eq!(status, 200, "{page}");
    let (_, billers) = web
        .api(&customer, Method::GET, "/v1/me/billers", "-", None)
        .await;
    let biller = billers["data"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["category"] == "electricity"))
        .expect("an electricity biller")
        .clone();
    let id = biller["id"].as_str().expect("id");
    assert!(page.contains(&format!("value=\"{id}\"")), "{page}");
    let digits =
        usize::try_from(biller["reference_digits"].as_u64().expect("digits")).expect("usize");
    let reference = |last4: &str| format!("{}{last4}", "7".repeat(digits - 4));

    // The simulator has nothing due on references ending 0000.
    let (status, nothing, _) = web
        .get(
            &mut customer,
            &format!("/bills/lookup?biller={id}&reference={}", reference("0000")),
        )
        .await;
    assert_eq!(status, 200, "{nothing}");
    assert!(
        nothing.contains("role=\"alert\"") && nothing.contains("暂无应缴"),
        "{nothing}"
    );

    let (status, bill, _) = web
        .get(
            &mut customer,
            &format!("/bills/lookup?biller={id}&reference={}", reference("2468")),
        )
        .await;
    assert_eq!(status, 200, "{bill}");
    assert!(
        bill.contains("data-testid=\"bill\"") && bill.contains("data-testid=\"holder\""),
        "{bill}"
    );
    let due: i64 = form_fields(&bill, "/bills/pay")
        .iter()
        .find(|(name, _)| name == "amount")
        .map(|(_, v)| v.parse().expect("minor units"))
        .expect("the amount due");
    assert!(due > 0);

    let (status, done) = through_step_up(&web, &mut customer, phone, &bill, "/bills/pay").await;
    assert_eq!(status, 200, "{done}");
    assert!(
        done.contains("data-testid=\"done\"") && done.contains("缴费成功"),
        "{done}"
    );
    assert_eq!(available(&web, &customer).await, 500_000 - due);

    // Paid: the biller has nothing due on it any more.
    let (_, again, _) = web
        .get(
            &mut customer,
            &format!("/bills/lookup?biller={id}&reference={}", reference("2468")),
        )
        .await;
    assert!(!again.contains("data-testid=\"bill\""), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currency_is_exchanged_at_the_quote_shown() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138512", "韩二").await;
    fund(&web, &customer, 200_000).await;
    let (status, page, _) = web.get(&mut customer, "/exchange").await;
    assert_eq!(status, 200, "{page}");
    let (_, wallets) = web
        .api(&customer, Method::GET, "/v1/me/wallets", "-", None)
        .await;
    let other = wallets["enabled_currencies"]
        .as_array()
        .and_then(|all| all.iter().filter_map(Value::as_str).find(|c| *c != "CNY"))
        .expect("a second currency")
        .to_string();

    // Two of the same currency are refused on the form, nothing asked.
    let mut fields = form_fields(&page, "/exchange/quote");
    fields.retain(|(name, _)| name == "csrf" || name == "idem");
    let mut same = fields.clone();
    same.extend([
        ("sell".to_string(), "CNY".to_string()),
        ("buy".to_string(), "CNY".to_string()),
        ("amount".to_string(), "100".to_string()),
    ]);
    let (status, refused) = post_form(&web, &mut customer, "/exchange/quote", &same).await;
    assert_eq!(status, 200);
    assert!(refused.contains("请选择两种不同的币种"), "{refused}");

    fields.extend([
        ("sell".to_string(), "CNY".to_string()),
        ("buy".to_string(), other.clone()),
        ("amount".to_string(), "100".to_string()),
    ]);
    let (status, quote) = post_form(&web, &mut customer, "/exchange/quote", &fields).await;
    assert_eq!(status, 200, "{quote}");
    assert!(quote.contains("data-testid=\"fx-quote\""), "{quote}");
    assert_eq!(
        available(&web, &customer).await,
        200_000,
        "a quote moves nothing"
    );
    let (status, done) = post_form(
        &web,
        &mut customer,
        "/exchange/convert",
        &form_fields(&quote, "/exchange/convert"),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("换汇成功"), "{done}");
    assert_eq!(available(&web, &customer).await, 200_000 - 10_000);
    let (_, wallets) = web
        .api(&customer, Method::GET, "/v1/me/wallets", "-", None)
        .await;
    let bought = wallets["data"]
        .as_array()
        .and_then(|all| all.iter().find(|w| w["currency"] == other.as_str()))
        .and_then(|w| w["available"].as_i64())
        .expect("the new wallet");
    assert!(bought > 0, "{wallets}");

    // The same quote cannot be used twice.
    let (status, twice) = post_form(
        &web,
        &mut customer,
        "/exchange/convert",
        &form_fields(&quote, "/exchange/convert")
            .into_iter()
            .map(|(k, v)| {
                if k == "idem" {
                    (k, "again-1".to_string())
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(twice.contains("role=\"alert\""), "{twice}");
    assert_eq!(available(&web, &customer).await, 200_000 - 10_000);
}
