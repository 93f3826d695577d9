//! Support requests through the pages: "Report a problem" on a receipt
//! opens the form prefilled with that transaction; a refused message keeps
//! what was typed; a double submit opens one request; support staff find
//! it in the console's queue (roles without `handle_support` do not) and
//! answer; the customer reads the answer and its alert, then closes the
//! request. Every form is CSRF-checked; both languages are shown.
//! (Named `support_requests`: `support` is the suite's shared helpers.)

use coffer_identity::Role;
use serde_json::{json, Value};

use crate::support::{location, sign_up, spawn_web, staff_console, Jar, Web};

const QUESTION: &str = "超市扣了两次款，请帮我查一下";
const ANSWER: &str = "已核实重复扣款，两个工作日内退回";

/// The named inputs of the form posting to `action` (hidden fields, the
/// CSRF token and the form's own Idempotency-Key).
fn inputs_of(page: &str, action: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form for {action}:\n{page}"));
    let end = start + page[start..].find("</form>").expect("</form>");
    let attribute = |tag: &str, name: &str| {
        let marker = format!(" {name}=\"");
        tag.find(&marker).map(|at| {
            let rest = &tag[at + marker.len()..];
            rest[..rest.find('"').expect("quote")].to_string()
        })
    };
    page[start..end]
        .split("<input")
        .skip(1)
        .map(|tag| &tag[..tag.find('>').expect(">")])
        .filter(|tag| !tag.contains("type=\"checkbox\""))
        .filter_map(|tag| {
            Some((
                attribute(tag, "name")?,
                attribute(tag, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

async fn submit(
    web: &Web,
    jar: &mut Jar,
    action: &str,
    inputs: &[(String, String)],
    extra: &[(&str, &str)],
) -> (u16, String, String) {
    let mut pairs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.extend_from_slice(extra);
    let (status, page, headers) = web.post(jar, action, &pairs).await;
    (status, page, location(&headers))
}

/// A card top-up through the JSON API with the customer's session: the
/// transaction to ask about (its activity row exists from the start).
async fn a_transaction(web: &Web, jar: &Jar) -> String {
    let bearer = format!("Bearer {}", jar.0.get("coffer_session").expect("session"));
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut request = web
            .client
            .request(method, format!("{}{path}", web.base))
            .header("authorization", &bearer)
            .header("idempotency-key", key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request
    };
    let card = call(
        reqwest::Method::POST,
        "/v1/me/cards",
        "card",
        Some(json!({"number": "4111111111111111", "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"})),
    )
    .send()
    .await
    .expect("card")
    .text()
    .await
    .expect("body");
    let card: Value = serde_json::from_str(&card).expect("json");
    let response = call(
        reqwest::Method::POST,
        "/v1/me/top-ups",
        "top-up",
        Some(json!({"amount": 2_000, "currency": "CNY", "card_id": card["id"]})),
    )
    .send()
    .await
    .expect("top-up");
    assert_eq!(response.status().as_u16(), 201);
    let activity = call(reqwest::Method::GET, "/v1/me/activity", "-", None)
        .send()
        .await
        .expect("activity")
        .text()
        .await
        .expect("body");
    let activity: Value = serde_json::from_str(&activity).expect("json");
    activity["data"][0]["id"]
        .as_str()
        .expect("an activity")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_a_problem_from_a_receipt_and_get_an_answer() {
    let web = spawn_web().await;
    let (mut customer, customer_id) = sign_up(&web, "+8613800138601", "孙丽").await;
    let activity_id = a_transaction(&web, &customer).await;

    // The receipt links to the form, prefilled with the transaction.
    let (status, receipt, _) = web
        .get(&mut customer, &format!("/history/{activity_id}"))
        .await;
    assert_eq!(status, 200, "{receipt}");
    let link = format!("/help/requests/new?transaction={activity_id}");
    assert!(receipt.contains(&format!("href=\"{link}\"")), "{receipt}");
    assert!(receipt.contains("这笔交易有问题？"), "{receipt}");
    let (status, form, _) = web.get(&mut customer, &link).await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("data-testid=\"about-transaction\""), "{form}");
    assert!(
        form.contains("value=\"payment_problem\" selected"),
        "{form}"
    );
    assert!(!form.contains("support."), "an untranslated key:\n{form}");
    let inputs = inputs_of(&form, "/help/requests");
    assert!(inputs
        .iter()
        .any(|(k, v)| k == "transaction_id" && *v == activity_id));

    // Without the CSRF token: refused, nothing opened.
    let without: Vec<(String, String)> = inputs
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .collect();
    let (status, _, _) = submit(
        &web,
        &mut customer,
        "/help/requests",
        &without,
        &[("category", "payment_problem"), ("message", QUESTION)],
    )
    .await;
    assert_eq!(status, 403);

    // A full card number is refused; what was typed stays in the form.
    let (status, page, _) = submit(
        &web,
        &mut customer,
        "/help/requests",
        &inputs,
        &[
            ("category", "payment_problem"),
            ("message", "卡号 4111 1111 1111 1111 被扣款"),
        ],
    )
    .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("不要包含完整卡号"), "{page}");
    assert!(page.contains("被扣款"), "the text is kept:\n{page}");

    // Sent from the re-rendered form (a fresh key); a double submit opens one.
    let inputs = inputs_of(&page, "/help/requests");
    let mut opened = Vec::new();
    for _ in 0..2 {
        let (status, page, to) = submit(
            &web,
            &mut customer,
            "/help/requests",
            &inputs,
            &[("category", "payment_problem"), ("message", QUESTION)],
        )
        .await;
        assert_eq!(status, 303, "{page}");
        opened.push(to);
    }
    assert_eq!(opened[0], opened[1]);
    assert!(
        opened[0].starts_with("/help/requests/tkt_")
            && opened[0].ends_with("?notice=notice.support_sent"),
        "{}",
        opened[0]
    );
    let thread_path = opened[0].split('?').next().expect("path").to_string();
    let ticket_id = thread_path
        .trim_start_matches("/help/requests/")
        .to_string();
    let (_, mine, _) = web.get(&mut customer, "/help/requests").await;
    assert_eq!(mine.matches("data-state=\"open\"").count(), 1, "{mine}");
    let (status, thread, _) = web.get(&mut customer, &opened[0]).await;
    assert_eq!(status, 200, "{thread}");
    assert!(
        thread.contains(QUESTION) && thread.contains("等待银行答复"),
        "{thread}"
    );
    assert!(thread.contains("已发送。"), "the notice:\n{thread}");

    // Staff without `handle_support` neither see nor open the queue.
    let mut analyst = staff_console(&web, "li.risk", vec![Role::RiskAnalyst]).await;
    let (_, home, _) = web.get(&mut analyst, "/staff").await;
    assert!(!home.contains("href=\"/staff/support\""), "{home}");
    let (status, _, _) = web.get(&mut analyst, "/staff/support").await;
    assert_eq!(status, 403);
    let (status, page, _) = web
        .get(&mut analyst, &format!("/staff/support/{ticket_id}"))
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(!page.contains(QUESTION));

    // Support staff: the menu, the queue, the thread, the answer.
    let mut support = staff_console(&web, "chen.support", vec![Role::Support]).await;
    let (_, home, _) = web.get(&mut support, "/staff").await;
    assert!(home.contains("href=\"/staff/support\""), "{home}");
    let (status, queue, _) = web.get(&mut support, "/staff/support").await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue.contains(&ticket_id) && queue.contains(&customer_id),
        "{queue}"
    );
    assert!(!queue.contains(QUESTION), "the queue shows no text");
    let staff_path = format!("/staff/support/{ticket_id}");
    let (status, ticket, _) = web.get(&mut support, &staff_path).await;
    assert_eq!(status, 200, "{ticket}");
    assert!(ticket.contains(QUESTION), "{ticket}");
    let reply_action = format!("{staff_path}/reply");
    let inputs = inputs_of(&ticket, &reply_action);
    let (status, _, to) = submit(
        &web,
        &mut support,
        &reply_action,
        &inputs,
        &[("message", ANSWER)],
    )
    .await;
    assert_eq!(
        (status, to.as_str()),
        (
            303,
            format!("{staff_path}?notice=notice.support_answered").as_str()
        )
    );
    let (_, ticket, _) = web.get(&mut support, &staff_path).await;
    assert!(
        ticket.contains(ANSWER) && ticket.contains("data-state=\"answered\""),
        "{ticket}"
    );
    assert!(ticket.contains("staff:chen.support"), "{ticket}");

    // The customer reads the answer (from "the bank") and the alert.
    let (_, thread, _) = web.get(&mut customer, &thread_path).await;
    assert!(
        thread.contains(ANSWER) && thread.contains("data-from=\"bank\""),
        "{thread}"
    );
    assert!(!thread.contains("chen.support"), "{thread}");
    let (_, alerts, _) = web.get(&mut customer, "/alerts").await;
    // In the language of the customer's alerts.
    assert!(
        alerts.contains("客服已回复") || alerts.contains("Bank support replied"),
        "{alerts}"
    );

    // Closing: the reply form goes away and staff can no longer answer.
    let close_action = format!("{thread_path}/close");
    let inputs = inputs_of(&thread, &close_action);
    let (status, _, to) = submit(&web, &mut customer, &close_action, &inputs, &[]).await;
    assert_eq!(
        (status, to.as_str()),
        (
            303,
            format!("{thread_path}?notice=notice.support_closed").as_str()
        )
    );
    let (_, thread, _) = web.get(&mut customer, &thread_path).await;
    assert!(
        thread.contains("data-state=\"closed\"")
            && !thread.contains(&format!("action=\"{thread_path}/reply\"")),
        "{thread}"
    );
    let (_, ticket, _) = web.get(&mut support, &staff_path).await;
    assert!(
        !ticket.contains(&format!("action=\"{reply_action}\"")),
        "{ticket}"
    );

    // The same pages in English.
    let (status, _, _) = web.get(&mut customer, "/lang/en?back=/help/requests").await;
    assert_eq!(status, 303);
    let (_, mine, _) = web.get(&mut customer, "/help/requests").await;
    assert!(
        mine.contains("My requests")
            && mine.contains("A problem with a payment")
            && mine.contains("Closed"),
        "{mine}"
    );
    let (_, help, _) = web.get(&mut customer, "/help").await;
    assert!(help.contains("href=\"/help/requests\""), "{help}");
}
