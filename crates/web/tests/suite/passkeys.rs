//! Passkeys on "Me": the list, removing one, and adding one through the page's JSON
//! endpoints (what `passkeys.js` calls) with a software authenticator in
//! place of the browser's — headless Chromium has none. Adding and
//! removing each need a step-up first.

use crate::support::{sign_up, spawn_web, through_step_up, Jar, Web};

// Sign-in with a passkey is not on these pages yet.
#[allow(dead_code)]
#[path = "../../../identity/tests/suite/support/authenticator.rs"]
mod authenticator;

/// An attribute of the passkey control the add page hands its script.
fn control(page: &str, attribute: &str) -> String {
    let start = page
        .find("id=\"passkey-add\"")
        .unwrap_or_else(|| panic!("no passkey control:\n{page}"));
    let marker = format!("{attribute}=\"");
    let at = start + page[start..].find(&marker).expect("attribute") + marker.len();
    page[at..at + page[at..].find('"').expect("quote")].to_string()
}

/// The add page (the script's control) after the step-up from "Me".
async fn add_page(web: &Web, jar: &mut Jar, phone: &str) -> String {
    let (_, me, _) = web.get(jar, "/me").await;
    let (status, page) = through_step_up(web, jar, phone, &me, "/me/passkeys/add").await;
    assert_eq!(status, 200, "{page}");
    page
}

async fn post_json(
    web: &Web,
    jar: &Jar,
    path: &str,
    csrf: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = web
        .client
        .post(format!("{}{path}", web.base))
        .header("cookie", jar.header())
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_passkey_see_it_listed_then_remove_it() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138321", "孙八").await;

    let (status, me, _) = web.get(&mut customer, "/me").await;
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("data-testid=\"no-passkeys\""), "{me}");
    // Adding starts with a step-up: the operation is named on its page.
    let (status, stepup) = crate::support::post_form(
        &web,
        &mut customer,
        "/me/passkeys/add",
        &crate::support::form_fields(&me, "/me/passkeys/add"),
    )
    .await;
    assert_eq!(status, 200, "{stepup}");
    assert!(stepup.contains("value=\"passkey_change\""), "{stepup}");
    let add = add_page(&web, &mut customer, "+8613800138321").await;
    assert!(
        add.contains("/passkeys.js\""),
        "the external script:\n{add}"
    );
    assert!(!add.contains("<script>"), "inline script:\n{add}");
    let csrf = control(&add, "data-csrf");
    let challenge = control(&add, "data-challenge");

    // Without the page's token the ceremony does not start.
    let (status, _) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        None,
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some("not-the-token"),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 403);

    // With the token but without the step-up: refused by the API.
    let (status, refused) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some(&csrf),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (403, &serde_json::json!("step_up_required"))
    );
    let (status, ceremony) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some(&csrf),
        &serde_json::json!({ "step_up_challenge_id": challenge }),
    )
    .await;
    assert_eq!(status, 200, "{ceremony}");
    let settings = coffer_identity::PasskeySettings::default();
    let mut device = authenticator::SoftPasskey::new(&settings.rp_id, &settings.origin);
    let answer = device.register(&ceremony["options"]);
    let finish = format!(
        "/me/passkeys/{}/finish",
        ceremony["ceremony_id"].as_str().expect("ceremony id")
    );
    let body = serde_json::json!({ "name": "我的手机", "credential": answer });
    let (status, added) = post_json(&web, &customer, &finish, Some(&csrf), &body).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["name"], "我的手机");
    // The script retrying the same answer gets the same passkey, not two.
    let (status, again) = post_json(&web, &customer, &finish, Some(&csrf), &body).await;
    assert_eq!((status, &again["id"]), (201, &added["id"]), "{again}");

    let (_, me, _) = web.get(&mut customer, "/me").await;
    assert!(me.contains("data-testid=\"passkeys\""), "{me}");
    assert_eq!(me.matches("我的手机").count(), 1, "{me}");
    assert!(!me.contains("me.passkey"), "an untranslated key:\n{me}");

    // Remove it with the plain form, after a step-up of its own.
    let (status, page) = through_step_up(
        &web,
        &mut customer,
        "+8613800138321",
        &me,
        "/me/passkeys/remove",
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, me, _) = web.get(&mut customer, "/me").await;
    assert!(me.contains("data-testid=\"no-passkeys\""), "{me}");
    assert!(!me.contains("我的手机"), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_adds_nothing() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138322", "周九").await;
    let add = add_page(&web, &mut customer, "+8613800138322").await;
    let csrf = control(&add, "data-csrf");
    let challenge = control(&add, "data-challenge");
    let (_, ceremony) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some(&csrf),
        &serde_json::json!({ "step_up_challenge_id": challenge }),
    )
    .await;
    let finish = format!(
        "/me/passkeys/{}/finish",
        ceremony["ceremony_id"].as_str().expect("ceremony id")
    );
    let (status, refused) = post_json(
        &web,
        &customer,
        &finish,
        Some(&csrf),
        &serde_json::json!({ "name": "x", "credential": { "id": "AAAA" } }),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {refused}");
    assert!(refused["error"]["code"].is_string(), "{refused}");
    let (_, me, _) = web.get(&mut customer, "/me").await;
    assert!(me.contains("data-testid=\"no-passkeys\""), "{me}");
}
