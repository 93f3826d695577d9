//! The back-office console over real HTTP: staff sign in through the form,
//! each role sees only what it may do, and a freeze done from the console
//! ends the customer's sessions at once.

use coffer_identity::Role;

use crate::support::{hidden, location, sign_up, spawn_web, staff_console};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_analyst_freezes_a_customer_from_the_console() {
    let web = spawn_web().await;
    let phone = "+8613800138201";
    let (mut customer, customer_id) = sign_up(&web, phone, "李雷").await;
    let (status, _, _) = web.get(&mut customer, "/").await;
    assert_eq!(status, 200, "the customer is signed in");

    let mut analyst = staff_console(&web, "analyst.one", vec![Role::RiskAnalyst]).await;
    let (status, home, _) = web.get(&mut analyst, "/staff").await;
    assert_eq!(status, 200, "{home}");
    // What a risk analyst may open, and not what they may not.
    for shown in [
        "/staff/customers",
        "/staff/risk",
        "/staff/audit",
        "/staff/approvals",
    ] {
        assert!(
            home.contains(&format!("href=\"{shown}\"")),
            "{shown} missing:\n{home}"
        );
    }
    for hidden_link in ["/staff/kyc", "/staff/compliance"] {
        assert!(
            !home.contains(&format!("href=\"{hidden_link}\"")),
            "{hidden_link} shown:\n{home}"
        );
    }
    assert!(
        home.contains("data-testid=\"queues\"") && home.contains("data-testid=\"volumes\""),
        "dashboards: {home}"
    );

    // Search by the whole contact, open the customer, freeze.
    let (status, found, _) = web
        .get(
            &mut analyst,
            &format!("/staff/customers?by=contact&q=%2B{}", &phone[1..]),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let link = format!("/staff/customers/{customer_id}");
    assert!(found.contains(&link), "{found}");
    let (status, profile, _) = web.get(&mut analyst, &link).await;
    assert_eq!(status, 200, "{profile}");
    assert!(profile.contains("data-status=\"active\""), "{profile}");
    let freeze = format!("{link}/freeze");
    // Without the form's CSRF token: refused, nothing frozen.
    let (status, _, _) = web.post(&mut analyst, &freeze, &[("reason", "x")]).await;
    assert_eq!(status, 403);
    let (status, _, headers) = web
        .post(
            &mut analyst,
            &freeze,
            &[
                ("csrf", &hidden(&profile, "csrf")),
                ("idem", &hidden(&profile, "idem")),
                ("reason", "card testing pattern"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(location(&headers).starts_with(&link));
    let (_, profile, _) = web.get(&mut analyst, &location(&headers)).await;
    assert!(profile.contains("data-status=\"frozen\""), "{profile}");
    assert!(profile.contains("该客户已冻结"), "{profile}");
    // A risk analyst may propose the unfreeze but not approve it.
    assert!(profile.contains(&format!("{link}/unfreeze")), "{profile}");

    // The customer is signed out everywhere and cannot sign in again.
    let (status, _, headers) = web.get(&mut customer, "/").await;
    assert_eq!((status, location(&headers).as_str()), (303, "/signin"));

    // The freeze is in the audit log the console shows.
    let (status, audit, _) = web
        .get(&mut analyst, &format!("/staff/audit?subject={customer_id}"))
        .await;
    assert_eq!(status, 200, "{audit}");
    assert!(audit.contains("customer_frozen"), "{audit}");

    // Maker-checker: the analyst proposes the unfreeze, a compliance
    // officer (who may approve, not freeze) approves it.
    let (_, profile, _) = web.get(&mut analyst, &link).await;
    let (status, _, headers) = web
        .post(
            &mut analyst,
            &format!("{link}/unfreeze"),
            &[
                ("csrf", &hidden(&profile, "csrf")),
                ("idem", &hidden(&profile, "idem")),
                ("reason", "customer called from the registered phone"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, proposed, _) = web.get(&mut analyst, &location(&headers)).await;
    assert!(proposed.contains("已提交申请"), "{proposed}");
    let (_, pending, _) = web.get(&mut analyst, "/staff/approvals").await;
    assert!(
        pending.contains(&customer_id) && !pending.contains("/decide\""),
        "the maker is not offered their own proposal:\n{pending}"
    );
    let mut officer = staff_console(&web, "officer.one", vec![Role::ComplianceOfficer]).await;
    let (status, pending, _) = web.get(&mut officer, "/staff/approvals").await;
    assert_eq!(status, 200, "{pending}");
    let start = pending.find("/staff/approvals/").expect("a decide form");
    let action = &pending[start..start + pending[start..].find('"').expect("quote")];
    let (status, _, _) = web
        .post(
            &mut officer,
            action,
            &[
                ("csrf", &hidden(&pending, "csrf")),
                ("idem", &hidden(&pending, "idem")),
                ("approve", "true"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, profile, _) = web.get(&mut officer, &link).await;
    assert!(profile.contains("data-status=\"active\""), "{profile}");
    assert!(
        !profile.contains("/freeze\""),
        "a compliance officer may not freeze"
    );

    // Each queue opens for the role that works it, and only for it.
    for (path, officer_may, analyst_may) in [
        ("/staff/compliance", true, false),
        ("/staff/kyc", true, false),
        ("/staff/risk", false, true),
        ("/staff/risk/rules", false, true),
        ("/staff/audit", true, true),
    ] {
        let (status, page, _) = web.get(&mut officer, path).await;
        assert_eq!(
            status == 200,
            officer_may,
            "officer {path}: {status}\n{page}"
        );
        let (status, page, _) = web.get(&mut analyst, path).await;
        assert_eq!(
            status == 200,
            analyst_may,
            "analyst {path}: {status}\n{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_staff_see_only_what_support_may_do() {
    let web = spawn_web().await;
    let (mut customer, customer_id) = sign_up(&web, "+8613800138202", "韩梅梅").await;
    let mut support = staff_console(&web, "support.one", vec![Role::Support]).await;
    let (_, home, _) = web.get(&mut support, "/staff").await;
    assert!(home.contains("href=\"/staff/customers\""), "{home}");
    for hidden_link in [
        "/staff/audit",
        "/staff/risk",
        "/staff/kyc",
        "/staff/compliance",
    ] {
        assert!(
            !home.contains(&format!("href=\"{hidden_link}\"")),
            "{hidden_link}:\n{home}"
        );
    }
    assert!(
        !home.contains("data-testid=\"queues\""),
        "no dashboards for support"
    );
    let (status, _, _) = web.get(&mut support, "/staff/audit").await;
    assert_eq!(status, 403);
    let (_, profile, _) = web
        .get(&mut support, &format!("/staff/customers/{customer_id}"))
        .await;
    assert!(
        profile.contains("data-status=\"active\"") && !profile.contains("/freeze\""),
        "support may not freeze:\n{profile}"
    );
    // The contact is masked for a role without `view_personal_data`.
    assert!(!profile.contains("13800138202"), "{profile}");
    // The customer sees, by role, that bank staff looked at their data.
    let (status, privacy, _) = web.get(&mut customer, "/privacy").await;
    assert_eq!(status, 200);
    assert!(
        privacy.contains("data-testid=\"access-log\"") && privacy.contains("银行员工 (客服)"),
        "{privacy}"
    );
    // Signing out of the console clears its cookie.
    let (status, _, headers) = web
        .post(
            &mut support,
            "/staff/signout",
            &[("csrf", &hidden(&home, "csrf"))],
        )
        .await;
    assert_eq!((status, location(&headers).as_str()), (303, "/staff"));
    let (_, page, _) = web.get(&mut support, "/staff").await;
    assert!(page.contains("action=\"/staff/signin\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merchant_portal_wants_a_merchant_key() {
    let web = spawn_web().await;
    let (mut customer, _) = sign_up(&web, "+8613800138203", "王芳").await;
    let (status, page, _) = web.get(&mut customer, "/merchant").await;
    assert_eq!(status, 200);
    assert!(page.contains("action=\"/merchant/signin\""), "{page}");
    // A customer's own session token is not a merchant key.
    let session = customer.0.get("coffer_session").cloned().expect("session");
    let (status, refused, headers) = web
        .post(
            &mut customer,
            "/merchant/signin",
            &[("csrf", &hidden(&page, "csrf")), ("api_key", &session)],
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    assert!(refused.contains("此密钥无法进入商户门户"), "{refused}");
    assert!(headers
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap_or("").starts_with("coffer_merchant=")));
    let (status, mine, _) = web.get(&mut customer, "/me/merchants").await;
    assert_eq!(status, 200);
    assert!(mine.contains("您名下没有商户"), "{mine}");
    // The privacy page asks for a step-up before the export.
    let (status, privacy, _) = web.get(&mut customer, "/privacy").await;
    assert_eq!(status, 200);
    let (status, stepup, _) = web
        .post(
            &mut customer,
            "/privacy/export",
            &[
                ("csrf", &hidden(&privacy, "csrf")),
                ("idem", &hidden(&privacy, "idem")),
            ],
        )
        .await;
    assert_eq!(status, 200, "{stepup}");
    assert!(
        stepup.contains("action=\"/stepup/start\"") && stepup.contains("value=\"data_export\""),
        "{stepup}"
    );
}

/// The text of the first `<textarea>` of a page, unescaped.
fn textarea(page: &str) -> String {
    let start = page.find("<textarea").expect("a textarea");
    let start = start + page[start..].find('>').expect(">") + 1;
    let end = start + page[start..].find("</textarea>").expect("</textarea>");
    page[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_changes_go_through_maker_checker_in_the_console() {
    let web = spawn_web().await;
    let mut maker = staff_console(&web, "pm.one", vec![Role::ProductManager]).await;
    let (status, page, _) = web.get(&mut maker, "/staff/settings/fees").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("当前生效版本 0"), "{page}");
    let document = textarea(&page);
    let fees: serde_json::Value = serde_json::from_str(&document).expect("the document is JSON");
    assert!(fees.is_object(), "{fees}");
    // Not JSON: the form comes back with the draft and the error.
    let (status, refused, _) = web
        .post(
            &mut maker,
            "/staff/settings/fees",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("base_version", "0"),
                ("document", "{ not json"),
                ("reason", "typo"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        refused.contains("这不是有效的 JSON") && refused.contains("{ not json"),
        "{refused}"
    );
    let (status, _, headers) = web
        .post(
            &mut maker,
            "/staff/settings/fees",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("base_version", "0"),
                ("document", &document),
                ("reason", "confirm the schedule in force"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{headers:?}");
    assert!(location(&headers).starts_with("/staff/approvals"));

    let mut checker = staff_console(&web, "admin.one", vec![Role::Administrator]).await;
    let (_, pending, _) = web.get(&mut checker, "/staff/approvals").await;
    let start = pending.find("/staff/approvals/").expect("a decide form");
    let action = &pending[start..start + pending[start..].find('"').expect("quote")];
    let (status, _, _) = web
        .post(
            &mut checker,
            action,
            &[
                ("csrf", &hidden(&pending, "csrf")),
                ("idem", &hidden(&pending, "idem")),
                ("approve", "true"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&mut checker, "/staff/settings/fees").await;
    assert!(page.contains("当前生效版本 1"), "{page}");
    assert!(
        !page.contains("<textarea"),
        "an administrator approves changes but does not write them"
    );
}
