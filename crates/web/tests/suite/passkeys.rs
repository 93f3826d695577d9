//! Passkeys on "Me": the list, removing one, and adding one through the page's JSON
//! endpoints (what `passkeys.js` calls) with a software authenticator in
//! place of the browser's — headless Chromium has none.

use crate::support::{hidden, location, sign_up, spawn_web, Jar, Web};

// Sign-in with a passkey is not on these pages yet.
#[allow(dead_code)]
#[path = "../../../identity/tests/suite/support/authenticator.rs"]
mod authenticator;

/// The CSRF token the "Me" page hands its script.
fn page_csrf(page: &str) -> String {
    let marker = "id=\"passkey-add\" hidden data-csrf=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no passkey control:\n{page}"))
        + marker.len();
    page[start..start + page[start..].find('"').expect("quote")].to_string()
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
    assert!(me.contains("/passkeys.js\""), "the external script:\n{me}");
    assert!(!me.contains("<script>"), "inline script:\n{me}");
    let csrf = page_csrf(&me);

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

    let (status, ceremony) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some(&csrf),
        &serde_json::json!({}),
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

    // Remove it with the plain form; a resubmitted form removes once.
    let remove = format!(
        "/me/passkeys/{}/remove",
        added["id"].as_str().expect("passkey id")
    );
    let form = &me[me.find(&remove).expect("remove form")..];
    let fields = [
        ("csrf", hidden(form, "csrf")),
        ("idem", hidden(form, "idem")),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page, headers) = web.post(&mut customer, &remove, &fields).await;
    assert_eq!(
        (status, location(&headers)),
        (303, "/me".to_string()),
        "{page}"
    );
    let (status, _, _) = web.post(&mut customer, &remove, &fields).await;
    assert_eq!(status, 303);
    let (_, me, _) = web.get(&mut customer, "/me").await;
    assert!(me.contains("data-testid=\"no-passkeys\""), "{me}");
    // Someone else's (or a gone) passkey: not found, nothing shown.
    let (_, me_now, _) = web.get(&mut customer, "/me").await;
    let csrf_now = page_csrf(&me_now);
    let (status, _, _) = web
        .post(
            &mut customer,
            &remove,
            &[("csrf", &csrf_now), ("idem", "another-key-1")],
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_adds_nothing() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138322", "周九").await;
    let (_, me, _) = web.get(&mut customer, "/me").await;
    let csrf = page_csrf(&me);
    let (_, ceremony) = post_json(
        &web,
        &customer,
        "/me/passkeys/start",
        Some(&csrf),
        &serde_json::json!({}),
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
