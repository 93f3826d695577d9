//! Customer pages beyond sign-up: download my data through the step-up
//! flow, and the alerts inbox that tells the customer about it.

use std::time::Duration;

use crate::support::{
    complete_step_up, form_fields, hidden, location, post_form, sign_up, spawn_web,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_my_data_after_a_step_up_and_see_the_alert() {
    let web = spawn_web().await;
    let phone = "+8613800138301";
    let (mut customer, customer_id) = sign_up(&web, phone, "赵敏").await;

    let (status, privacy, _) = web.get(&mut customer, "/privacy").await;
    assert_eq!(status, 200, "{privacy}");
    let (status, stepup) = post_form(
        &web,
        &mut customer,
        "/privacy/export",
        &form_fields(&privacy, "/privacy/export"),
    )
    .await;
    assert_eq!(status, 200, "{stepup}");
    let verified = complete_step_up(&web, &mut customer, phone, &stepup).await;
    let (status, ready) = post_form(
        &web,
        &mut customer,
        "/privacy/export",
        &form_fields(&verified, "/privacy/export"),
    )
    .await;
    assert_eq!(status, 200, "{ready}");
    let start = ready
        .find("href=\"/privacy/exports/")
        .expect("a download link")
        + "href=\"".len();
    let link = &ready[start..start + ready[start..].find('"').expect("quote")];
    let response = web
        .client
        .get(format!("{}{link}", web.base))
        .header("cookie", customer.header())
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    let archive: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(archive["schema"], "coffer.privacy.export/1");
    assert!(archive.to_string().contains(&customer_id), "{archive}");
    assert!(!archive.to_string().contains("a quiet walk by the lake"));

    // The export is announced in the inbox; home counts it as unread.
    let mut inbox = String::new();
    for _ in 0..200 {
        inbox = web.get(&mut customer, "/alerts").await.1;
        if inbox.contains("class=\"alert unread\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inbox.contains("class=\"alert unread\""), "{inbox}");
    let (_, home, _) = web.get(&mut customer, "/").await;
    assert!(home.contains("data-testid=\"unread-alerts\""), "{home}");
    // Without the form's token nothing is marked; with it, all are read.
    let (status, _, _) = web.post(&mut customer, "/alerts/read-all", &[]).await;
    assert_eq!(status, 403);
    let (status, _, headers) = web
        .post(
            &mut customer,
            "/alerts/read-all",
            &[
                ("csrf", &hidden(&inbox, "csrf")),
                ("idem", &hidden(&inbox, "idem")),
            ],
        )
        .await;
    assert_eq!((status, location(&headers).as_str()), (303, "/alerts"));
    let (_, inbox, _) = web.get(&mut customer, "/alerts").await;
    assert!(
        !inbox.contains("class=\"alert unread\"") && inbox.contains("data-testid=\"alerts\""),
        "{inbox}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_my_wallet_after_a_step_up() {
    let web = spawn_web().await;
    let phone = "+8613800138302";
    let (mut customer, _) = sign_up(&web, phone, "周芷若").await;
    let (_, privacy, _) = web.get(&mut customer, "/privacy").await;
    let mut fields = form_fields(&privacy, "/privacy/erase");
    fields.push(("confirm".into(), "yes".into()));
    let (status, stepup) = post_form(&web, &mut customer, "/privacy/erase", &fields).await;
    assert_eq!(status, 200, "{stepup}");
    assert!(stepup.contains("value=\"account_deletion\""), "{stepup}");
    let verified = complete_step_up(&web, &mut customer, phone, &stepup).await;
    let (status, closed) = post_form(
        &web,
        &mut customer,
        "/privacy/erase",
        &form_fields(&verified, "/privacy/erase"),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert!(closed.contains("钱包已注销"), "{closed}");
    assert!(
        !customer.0.contains_key("coffer_session"),
        "the session cookie is cleared"
    );
    let (status, _, headers) = web.get(&mut customer, "/").await;
    assert_eq!((status, location(&headers).as_str()), (303, "/signin"));
}
