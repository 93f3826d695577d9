//! The help page (the FAQ, in both languages, open to visitors) and
//! allowing a partner to read my data from the privacy page, then
//! withdrawing it.

use crate::support::{hidden, location, sign_up, spawn_web, Jar};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faq_answers_in_both_languages() {
    let web = spawn_web().await;
    let mut visitor = Jar::default();
    // The test client asks for Chinese first.
    let (status, page, _) = web.get(&mut visitor, "/help").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("在商店怎样付款？"), "{page}");
    assert!(page.contains("data-testid=\"faq-lost_phone\""), "{page}");
    assert!(!page.contains("help.q."), "an untranslated key:\n{page}");

    let (status, _, _) = web.get(&mut visitor, "/lang/en?back=/help").await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&mut visitor, "/help").await;
    assert!(page.contains("How do I pay in a shop?"), "{page}");
    assert!(!page.contains("help.a."), "an untranslated key:\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_a_partner_then_withdraw_it() {
    let web = spawn_web().await;
    let service = web.state.service.clone();
    tokio::task::spawn_blocking(move || {
        let (_, record) = coffer_api::auth::generate("acme", vec!["partner:acme".into()], 0);
        service.insert_api_key(&record).expect("partner key");
    })
    .await
    .expect("setup");
    let (mut customer, _) = sign_up(&web, "+8613800138311", "钱七").await;

    let (status, privacy, _) = web.get(&mut customer, "/privacy").await;
    assert_eq!(status, 200, "{privacy}");
    assert!(
        privacy.contains("action=\"/privacy/consents\""),
        "{privacy}"
    );
    let grant = |page: &str, partner: &str| {
        let form = &page[page.find("action=\"/privacy/consents\"").expect("form")..];
        (
            hidden(form, "csrf"),
            hidden(form, "idem"),
            partner.to_string(),
        )
    };

    // An unknown partner is refused, and nothing is granted.
    let (csrf, idem, partner) = grant(&privacy, "nobody");
    let (status, page, _) = web
        .post(
            &mut customer,
            "/privacy/consents",
            &[
                ("csrf", &csrf),
                ("idem", &idem),
                ("partner_id", &partner),
                ("scope_profile", "yes"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(status, 404, "{page}");

    let (_, privacy, _) = web.get(&mut customer, "/privacy").await;
    let (csrf, idem, partner) = grant(&privacy, "acme");
    let from = hidden(
        &privacy[privacy.find("action=\"/privacy/consents\"").expect("form")..],
        "from",
    );
    let fields = [
        ("csrf", csrf.as_str()),
        ("idem", idem.as_str()),
        ("from", from.as_str()),
        ("partner_id", partner.as_str()),
        ("scope_profile", "yes"),
        ("scope_balance", "yes"),
        ("days", "90"),
    ];
    let (status, page, headers) = web.post(&mut customer, "/privacy/consents", &fields).await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(location(&headers), "/privacy");
    // The same form sent twice grants once.
    let (status, _, _) = web.post(&mut customer, "/privacy/consents", &fields).await;
    assert_eq!(status, 303);

    let (_, consents, _) = web.get(&mut customer, "/v1/me/privacy/consents").await;
    let consents: serde_json::Value = serde_json::from_str(&consents).expect("json");
    let data = consents["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{consents}");
    assert_eq!(data[0]["partner_id"], "acme");
    assert_eq!(data[0]["live"], true);
    assert_eq!(
        data[0]["scopes"],
        serde_json::json!(["profile", "balance"]),
        "{consents}"
    );
    let id = data[0]["id"].as_str().expect("id").to_string();

    let (_, privacy, _) = web.get(&mut customer, "/privacy").await;
    assert!(privacy.contains("acme"), "{privacy}");
    let revoke = format!("/privacy/consents/{id}/revoke");
    let form = &privacy[privacy.find(&revoke).expect("withdraw form")..];
    let (status, page, _) = web
        .post(
            &mut customer,
            &revoke,
            &[
                ("csrf", &hidden(form, "csrf")),
                ("idem", &hidden(form, "idem")),
            ],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let (_, consents, _) = web.get(&mut customer, "/v1/me/privacy/consents").await;
    let consents: serde_json::Value = serde_json::from_str(&consents).expect("json");
    assert_eq!(consents["data"][0]["live"], false, "{consents}");
}
