//! The web app over real HTTP against the real API and a throwaway SQLite
//! database: page security (CSP, no-store, CSRF on every POST, cookie
//! flags), sign-up through the forms with the simulated SMS code, the
//! language switch and locale formatting, and the embedded assets.

use std::time::Duration;

use crate::support::{hidden, location, spawn_web, Jar};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_locked_down() {
    let web = spawn_web().await;
    let mut jar = Jar::default();
    let (status, _, headers) = web.get(&mut jar, "/").await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/signin");
    let (status, page, headers) = web.get(&mut jar, "/signin").await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        !page.contains("<script>") && !page.contains(" style="),
        "inline script or style:\n{page}"
    );
    assert!(jar.0.contains_key("coffer_csrf"), "a CSRF cookie is set");
    let token = hidden(&page, "csrf");

    // No token, a wrong one, or the right one without its cookie: refused.
    for (form, cookie) in [
        (vec![("contact", "+8613800000001"), ("password", "x")], true),
        (
            vec![
                ("csrf", "0000"),
                ("contact", "+8613800000001"),
                ("password", "x"),
            ],
            true,
        ),
        (
            vec![
                ("csrf", token.as_str()),
                ("contact", "+8613800000001"),
                ("password", "x"),
            ],
            false,
        ),
    ] {
        let mut other = Jar::default();
        let jar_used = if cookie { &mut jar } else { &mut other };
        let (status, page, _) = web.post(jar_used, "/signin", &form).await;
        assert_eq!(status, 403, "{page}");
    }
    // With both: the answer is about the credentials.
    let (status, page, _) = web
        .post(
            &mut jar,
            "/signin",
            &[
                ("csrf", &token),
                ("contact", "+8613800000001"),
                ("password", "wrong password here"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("账号或密码不正确"), "{page}");

    // Assets: hashed paths cached for a year, the service worker lists them.
    let css = coffer_web::assets::path("app.css");
    let (status, _, headers) = web.get(&mut jar, &css).await;
    assert_eq!(status, 200);
    assert!(headers["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("immutable"));
    let (_, worker, _) = web.get(&mut jar, "/sw.js").await;
    assert!(worker.contains(&css) && !worker.contains("__ASSETS__"));
    let (status, _, _) = web.get(&mut jar, "/assets/0/nothing.css").await;
    assert_eq!(status, 404);
    drop(web.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_through_the_forms_then_switch_language() {
    let web = spawn_web().await;
    let mut jar = Jar::default();
    let (_, page, _) = web.get(&mut jar, "/signup").await;
    let phone = "+8613800138123";
    let (status, page, _) = web
        .post(
            &mut jar,
            "/signup",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("contact", phone),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let registration = hidden(&page, "registration_id");
    let mut code = None;
    for _ in 0..100 {
        code = web.sms.last_code(phone);
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = code.expect("an SMS code");
    // A wrong code keeps the customer on the form, with the error.
    let csrf = hidden(&page, "csrf");
    let (status, wrong, _) = web
        .post(
            &mut jar,
            "/signup/complete",
            &[
                ("csrf", &csrf),
                ("registration_id", &registration),
                ("code", "000000"),
                ("display_name", "测试"),
                ("password", "a quiet walk by the lake"),
                ("accept_terms", coffer_identity::TERMS_VERSION),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(wrong.contains("验证码错误"), "{wrong}");
    let (status, _, headers) = web
        .post(
            &mut jar,
            "/signup/complete",
            &[
                ("csrf", &csrf),
                ("registration_id", &registration),
                ("code", &code),
                ("display_name", "测试"),
                ("password", "a quiet walk by the lake"),
                ("accept_terms", coffer_identity::TERMS_VERSION),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(location(&headers).starts_with("/kyc"));
    let session_cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .find(|c| c.starts_with("coffer_session="))
        .expect("session cookie");
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
    assert!(
        !session_cookie.contains("Secure"),
        "plain HTTP here: {session_cookie}"
    );

    let (status, home, _) = web.get(&mut jar, "/").await;
    assert_eq!(status, 200, "{home}");
    assert!(
        home.contains("¥0.00") && home.contains("您好，测试"),
        "{home}"
    );
    // The token seen before signing in no longer works now.
    let (status, _, _) = web.post(&mut jar, "/signout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 403);

    let (status, _, headers) = web.get(&mut jar, "/lang/en?back=/history").await;
    assert_eq!((status, location(&headers).as_str()), (303, "/history"));
    let (_, home, _) = web.get(&mut jar, "/").await;
    assert!(
        home.contains("CN¥0.00") && home.contains("Hello, 测试"),
        "{home}"
    );
    assert!(home.contains("lang=\"en\""));

    let (_, page, _) = web.get(&mut jar, "/me").await;
    let (status, _, headers) = web
        .post(&mut jar, "/signout", &[("csrf", &hidden(&page, "csrf"))])
        .await;
    assert_eq!(status, 303);
    assert!(location(&headers).starts_with("/signin"));
    let (status, _, _) = web.get(&mut jar, "/").await;
    assert_eq!(status, 303, "signed out");
}
