//! "Was this you?" in the customer app, and the alert preferences.
//! Rules that hold every payment of CNY 100 or more for review are
//! activated; the customer pays twice, sees both held on Home, releases
//! one ("yes", after a step-up bound to that payment) and disowns the
//! other ("no": declined and the wallet frozen).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    available, complete_step_up, form_fields, fund, location, post_form, sign_up, spawn_web, Jar,
    Web,
};

const HELD_FROM: i64 = 10_000;

/// Every payment of `HELD_FROM` or more held for review.
async fn activate_review_rules(web: &Web) {
    let risk = web.state.risk.risk.clone();
    tokio::task::spawn_blocking(move || {
        let rules = json!({
            "currency": "CNY",
            "utc_offset_seconds": 28800,
            "thresholds": {"step_up": 40, "review": 70, "block_and_freeze": 100},
            "rules": [{"id": "big", "description": "A big payment", "when": {"amount_at_least": {"min_amount": HELD_FROM}}, "outcome": "review"}]
        });
        let draft = risk
            .create_draft("staff:test", &rules.to_string())
            .expect("draft");
        risk.activate("staff:test", draft.version).expect("activate");
    })
    .await
    .expect("join");
}

/// A P2P payment through the API, which the rules hold.
async fn pay(web: &Web, jar: &Jar, key: &str, payee: &str, amount: i64) -> Value {
    let (status, quote) = web
        .api(
            jar,
            Method::POST,
            "/v1/me/p2p/quotes",
            &format!("{key}-q"),
            Some(json!({"payee": payee, "amount": amount, "currency": "CNY"})),
        )
        .await;
    assert_eq!(status, 201, "{quote}");
    assert_eq!(quote["step_up_required"], json!(false), "{quote}");
    let (status, paid) = web
        .api(
            jar,
            Method::POST,
            "/v1/me/p2p/payments",
            key,
            Some(json!({"quote_id": quote["id"], "amount": quote["amount"], "fee": quote["fee"], "currency": "CNY"})),
        )
        .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (201, Some("held")),
        "{paid}"
    );
    paid
}

/// The fields of the answer form for one case and answer.
fn answer_form(page: &str, case_id: &str, was_me: &str) -> Vec<(String, String)> {
    let marker = format!("name=\"case_id\" value=\"{case_id}\"><input type=\"hidden\" name=\"was_me\" value=\"{was_me}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {was_me} form for {case_id}:\n{page}"));
    let start = page[..at].rfind("<form").expect("<form");
    form_fields(&page[start..], "/held/answer")
}

async fn cases(web: &Web, jar: &Jar) -> Vec<Value> {
    let (status, cases) = web
        .api(jar, Method::GET, "/v1/me/risk/cases", "-", None)
        .await;
    assert_eq!(status, 200, "{cases}");
    cases["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_payments_are_answered_from_the_app() {
    let web = spawn_web().await;
    let phone = "+8613800138411";
    let (mut payer, payer_id) = sign_up(&web, phone, "林晓").await;
    let (_payee, _) = sign_up(&web, "+8613800138412", "周宁").await;
    fund(&web, &payer, 100_000).await;
    activate_review_rules(&web).await;

    // Nothing held yet: no banner, an empty page.
    let (_, home, _) = web.get(&mut payer, "/").await;
    assert!(!home.contains("data-testid=\"held-waiting\""), "{home}");
    let (status, held, _) = web.get(&mut payer, "/held").await;
    assert_eq!(status, 200, "{held}");
    assert!(held.contains("没有需要您确认的付款"), "{held}");

    pay(&web, &payer, "held-pay-1", "+8613800138412", 15_000).await;
    pay(&web, &payer, "held-pay-2", "+8613800138412", 12_000).await;
    let open = cases(&web, &payer).await;
    assert_eq!(open.len(), 2, "{open:?}");
    let case_of = |amount: i64| {
        open.iter()
            .find(|c| c["amount"] == json!(amount))
            .and_then(|c| c["id"].as_str())
            .expect("a case")
            .to_string()
    };
    let (release, disown) = (case_of(15_000), case_of(12_000));
    // The held money is reserved, not gone.
    assert_eq!(available(&web, &payer).await, 100_000 - 15_000 - 12_000);

    let (_, home, _) = web.get(&mut payer, "/").await;
    assert!(
        home.contains("data-testid=\"held-waiting\"") && home.contains("2 笔付款被暂停"),
        "{home}"
    );
    let (_, held, _) = web.get(&mut payer, "/held").await;
    assert!(
        held.contains("data-testid=\"held-payments\"")
            && held.contains("150.00")
            && held.contains("120.00"),
        "{held}"
    );

    // A forged answer (no CSRF token) changes nothing.
    let mut forged = answer_form(&held, &release, "yes");
    forged.retain(|(name, _)| name != "csrf");
    let (status, _) = post_form(&web, &mut payer, "/held/answer", &forged).await;
    assert_eq!(status, 403);

    // "Yes" asks for a step-up bound to the held payment first.
    let (status, stepup) = post_form(
        &web,
        &mut payer,
        "/held/answer",
        &answer_form(&held, &release, "yes"),
    )
    .await;
    assert_eq!(status, 200, "{stepup}");
    assert!(
        stepup.contains("value=\"risk_case_release\"")
            && stepup.contains(&format!("value=\"case:{release}\""))
            && stepup.contains("value=\"15000\""),
        "{stepup}"
    );
    assert_eq!(
        cases(&web, &payer)
            .await
            .iter()
            .filter(|c| c["state"] == "open")
            .count(),
        2,
        "nothing released before the step-up"
    );
    let verified = complete_step_up(&web, &mut payer, phone, &stepup).await;
    let (status, _, headers) = {
        let fields = form_fields(&verified, "/held/answer");
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        web.post(&mut payer, "/held/answer", &pairs).await
    };
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/held?notice=notice.held_released");
    let now = cases(&web, &payer).await;
    let released = now
        .iter()
        .find(|c| c["id"] == json!(release))
        .expect("case");
    assert_eq!(released["state"], "released", "{released}");

    // One left on Home; "no" declines it and freezes the wallet.
    let (_, home, _) = web.get(&mut payer, "/").await;
    assert!(home.contains("1 笔付款被暂停"), "{home}");
    let (_, held, _) = web.get(&mut payer, "/held").await;
    assert!(held.contains("data-testid=\"held-answered\""), "{held}");
    let (status, declined) = post_form(
        &web,
        &mut payer,
        "/held/answer",
        &answer_form(&held, &disown, "no"),
    )
    .await;
    assert_eq!(status, 200, "{declined}");
    assert!(declined.contains("钱包已冻结"), "{declined}");
    // The wallet is frozen: this session is over.
    let (status, _, headers) = web.get(&mut payer, "/").await;
    assert!(
        status == 303 && location(&headers).starts_with("/signin"),
        "{status}"
    );
    // The disowned payment's money is back; the released one is gone.
    let reader = web.state.reader.clone();
    let wallet = coffer_core::Identifier::parse(&coffer_payments::funding::wallet_account_id(
        &payer_id, "CNY",
    ))
    .expect("wallet id");
    let account = tokio::task::spawn_blocking(move || reader.account(&wallet))
        .await
        .expect("join")
        .expect("read")
        .expect("the wallet");
    assert_eq!(account.available(), 100_000 - 15_000);
    assert_eq!(account.posted(), 100_000 - 15_000);
}

/// The checkbox inputs of the preferences form as a browser would send
/// them: the ticked ones only.
fn ticked(page: &str) -> Vec<(String, String)> {
    let start = page
        .find("action=\"/alerts/preferences\"")
        .unwrap_or_else(|| panic!("no preferences form:\n{page}"));
    let form = &page[start..start + page[start..].find("</form>").expect("</form>")];
    form.split("<input")
        .skip(1)
        .map(|tag| &tag[..tag.find('>').expect(">")])
        .filter(|tag| tag.contains("type=\"checkbox\"") && tag.contains(" checked"))
        .filter_map(|tag| {
            let at = tag.find(" name=\"")? + " name=\"".len();
            Some((
                tag[at..at + tag[at..].find('"')?].to_string(),
                "on".to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_preferences_are_chosen_on_the_alerts_page() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138421", "高远").await;
    let (status, alerts, _) = web.get(&mut customer, "/alerts").await;
    assert_eq!(status, 200, "{alerts}");
    assert!(
        alerts.contains("data-testid=\"alert-preferences\"") && alerts.contains("安全提醒"),
        "{alerts}"
    );
    let before = ticked(&alerts);
    assert!(
        before.iter().any(|(n, _)| n == "pref:payment_received:sms"),
        "{before:?}"
    );
    assert!(!before.iter().any(|(n, _)| n == "marketing_opt_in"));

    // Untick "money received by SMS", tick the marketing consent.
    let mut fields = form_fields(&alerts, "/alerts/preferences");
    fields.retain(|(name, _)| !name.starts_with("pref:") && name != "marketing_opt_in");
    fields.extend(
        before
            .into_iter()
            .filter(|(name, _)| name != "pref:payment_received:sms"),
    );
    fields.push(("marketing_opt_in".into(), "on".into()));
    let (status, _, headers) = {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        web.post(&mut customer, "/alerts/preferences", &pairs).await
    };
    assert_eq!(status, 303);
    assert_eq!(
        location(&headers),
        "/alerts?notice=notice.preferences_saved"
    );
    let (_, saved) = web
        .api(
            &customer,
            Method::GET,
            "/v1/me/notification-preferences",
            "-",
            None,
        )
        .await;
    let switch = |category: &str, channel: &str| {
        saved["preferences"]
            .as_array()
            .expect("preferences")
            .iter()
            .find(|p| p["category"] == category && p["channel"] == channel)
            .and_then(|p| p["enabled"].as_bool())
            .expect("a switch")
    };
    assert!(!switch("payment_received", "sms"), "{saved}");
    assert!(switch("payment_received", "inbox"), "{saved}");
    assert_eq!(saved["marketing_opt_in"], json!(true), "{saved}");
    assert_eq!(saved["marketing_source"], json!("web"), "{saved}");
    let consented_at = saved["marketing_changed_at"].clone();

    // Saving again as shown changes nothing, the consent's date included.
    let (_, alerts, _) = web.get(&mut customer, "/alerts").await;
    let mut fields = form_fields(&alerts, "/alerts/preferences");
    fields.retain(|(name, _)| !name.starts_with("pref:") && name != "marketing_opt_in");
    fields.extend(ticked(&alerts));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _, _) = web.post(&mut customer, "/alerts/preferences", &pairs).await;
    assert_eq!(status, 303);
    let (_, again) = web
        .api(
            &customer,
            Method::GET,
            "/v1/me/notification-preferences",
            "-",
            None,
        )
        .await;
    assert_eq!(again["preferences"], saved["preferences"]);
    assert_eq!(again["marketing_changed_at"], consented_at);
}
