//! The console's rules, merchant, campaign and dead-letter pages over real
//! HTTP, as staff of different roles: each role sees and may open only its
//! own pages, and each page's forms do what the API does.

use std::sync::Arc;
use std::time::Duration;

use coffer_core::{Clock, SystemClock, Timestamp};
use coffer_identity::Role;
use serde_json::{json, Value};

use crate::support::{hidden, location, sign_up, spawn_web, staff_console, Jar, Web};

/// The text of the first `<textarea>` of a page, unescaped.
fn first_textarea(page: &str) -> String {
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

/// The `action` of the first form posting to a path that starts with `prefix`.
fn form_action(page: &str, prefix: &str) -> String {
    let marker = format!("action=\"{prefix}");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no form for {prefix}:\n{page}"))
        + "action=\"".len();
    page[start..start + page[start..].find('"').expect("quote")].to_string()
}

/// The whole number right after `marker` in a page.
fn number_in(page: &str, marker: &str) -> i64 {
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker}:\n{page}"))
        + marker.len();
    let digits: String = page[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {marker}"))
}

fn links_to(page: &str, path: &str) -> bool {
    page.contains(&format!("href=\"{path}\""))
}

fn rule_set() -> Value {
    json!({
        "currency": "CNY",
        "utc_offset_seconds": 28800,
        "thresholds": {"step_up": 40, "review": 70, "block_and_freeze": 100},
        "rules": [
            {"id": "big", "description": "A big payment", "when": {"amount_at_least": {"min_amount": 70000}}, "outcome": "review"},
            {"id": "blocked", "description": "Blocklisted", "when": {"blocklisted": {"lists": ["payee"]}}, "outcome": "block_and_freeze"}
        ]
    })
}

async fn post_draft(web: &Web, jar: &mut Jar, page: &str, text: &str) -> (u16, String, String) {
    let (status, body, headers) = web
        .post(
            jar,
            "/staff/risk/rules",
            &[
                ("csrf", &hidden(page, "csrf")),
                ("idem", &hidden(page, "idem")),
                ("rules", text),
            ],
        )
        .await;
    (status, body, location(&headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_are_drafted_dry_run_and_activated_from_the_console() {
    let web = spawn_web().await;
    // A registration, assessed by the rules in force: traffic to replay.
    sign_up(&web, "+8613800138300", "赵敏").await;
    let mut analyst = staff_console(&web, "analyst.rules", vec![Role::RiskAnalyst]).await;
    let (status, home, _) = web.get(&mut analyst, "/staff").await;
    assert_eq!(status, 200, "{home}");
    assert!(
        links_to(&home, "/staff/risk/rules") && links_to(&home, "/staff/risk/blocklist"),
        "{home}"
    );
    for hidden_link in [
        "/staff/merchants",
        "/staff/campaigns",
        "/staff/notifications",
        "/staff/settlements",
    ] {
        assert!(!links_to(&home, hidden_link), "{hidden_link}:\n{home}");
    }

    // The draft form starts from the rule set in force.
    let (status, page, _) = web.get(&mut analyst, "/staff/risk/rules").await;
    assert_eq!(status, 200, "{page}");
    let in_force: Value =
        serde_json::from_str(&first_textarea(&page)).expect("the rule set in force is JSON");
    assert!(in_force["rules"].is_array(), "{in_force}");
    assert!(page.contains("data-state=\"active\""), "{page}");

    // Not JSON: the text comes back with the error.
    let (status, refused, _) = post_draft(&web, &mut analyst, &page, "{ not json").await;
    assert_eq!(status, 200);
    assert!(
        refused.contains("这不是有效的 JSON") && first_textarea(&refused) == "{ not json",
        "{refused}"
    );

    // Three problems: each shown with its field, the text kept.
    let mut bad = rule_set();
    bad["thresholds"]["review"] = json!(10);
    bad["rules"][0]["score"] = json!(5);
    bad["rules"][1]["when"] = json!({"blocklisted": {"lists": []}});
    let bad_text = serde_json::to_string_pretty(&bad).expect("json");
    let (status, refused, _) = post_draft(&web, &mut analyst, &refused, &bad_text).await;
    assert_eq!(status, 200, "{refused}");
    assert!(refused.contains("data-testid=\"rule-errors\""), "{refused}");
    for field in [
        "thresholds.review",
        "rules[0].score",
        "rules[1].when.blocklisted.lists",
    ] {
        assert!(
            refused.contains(&format!("<code>{field}</code>")),
            "{field}:\n{refused}"
        );
    }
    assert!(refused.contains("共 3 个问题"), "{refused}");
    assert_eq!(first_textarea(&refused), bad_text, "the draft is kept");
    assert!(
        !refused.contains("data-state=\"draft\""),
        "nothing was stored"
    );

    // A valid draft: stored, then its dry run.
    let good = serde_json::to_string_pretty(&rule_set()).expect("json");
    let (status, _, to) = post_draft(&web, &mut analyst, &refused, &good).await;
    assert_eq!(status, 303);
    assert!(
        to.starts_with("/staff/risk/rules/") && to.contains("/dry-run"),
        "{to}"
    );
    let version: i64 = to["/staff/risk/rules/".len()..to.find("/dry-run").expect("dry-run")]
        .parse()
        .expect("a version number");
    let (status, run, _) = web.get(&mut analyst, &to).await;
    assert_eq!(status, 200, "{run}");
    assert!(run.contains("草稿已保存"), "{run}");
    assert!(run.contains("data-testid=\"dry-run-counts\""), "{run}");
    for outcome in ["allow", "step_up", "review", "block_and_freeze"] {
        assert!(
            run.contains(&format!("data-outcome=\"{outcome}\"")),
            "{outcome}:\n{run}"
        );
    }
    let evaluations = number_in(&run, "data-testid=\"evaluations\">");
    assert!(evaluations >= 1, "the registration is replayed:\n{run}");
    assert_eq!(
        number_in(
            &run,
            "data-outcome=\"allow\"><th scope=\"row\">放行</th><td>"
        ),
        evaluations,
        "every replayed evaluation was allowed:\n{run}"
    );
    assert!(run.contains("data-testid=\"changed\""), "{run}");
    let (status, rerun, _) = web
        .get(
            &mut analyst,
            &format!("/staff/risk/rules/{version}/dry-run?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{rerun}");
    assert!(rerun.contains("<option value=\"100\" selected>"), "{rerun}");

    // Activated from the dry run: the versions list shows it in force.
    let activate = form_action(&run, &format!("/staff/risk/rules/{version}/activate"));
    let (status, _, headers) = web
        .post(
            &mut analyst,
            &activate,
            &[
                ("csrf", &hidden(&run, "csrf")),
                ("idem", &hidden(&run, "idem")),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (status, listed, _) = web.get(&mut analyst, &location(&headers)).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.contains("已激活"), "{listed}");
    let section = &listed[listed
        .find(&format!("data-testid=\"rules-{version}\""))
        .expect("the version's section")..];
    assert!(
        section[..section.find("</section>").expect("end")].contains("data-state=\"active\""),
        "{listed}"
    );
    let in_force: Value = serde_json::from_str(&first_textarea(&listed)).expect("json");
    assert_eq!(in_force["rules"][0]["id"], "big", "the draft form follows");

    // Activating it again is refused, and the console says why.
    let (status, again, _) = web
        .post(
            &mut analyst,
            &activate,
            &[
                ("csrf", &hidden(&listed, "csrf")),
                ("idem", "activate-again-1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert!(again.contains("只有草稿可以激活"), "{again}");

    // The blocklist: add an entry, see it listed.
    let (status, blocks, _) = web.get(&mut analyst, "/staff/risk/blocklist").await;
    assert_eq!(status, 200, "{blocks}");
    let (status, _, headers) = web
        .post(
            &mut analyst,
            "/staff/risk/blocklist",
            &[
                ("csrf", &hidden(&blocks, "csrf")),
                ("idem", &hidden(&blocks, "idem")),
                ("list", "payee"),
                ("value", "cus_mule_0001"),
                ("reason", "reported money mule"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, blocks, _) = web.get(&mut analyst, &location(&headers)).await;
    assert!(
        blocks.contains("data-testid=\"blocklist\"") && blocks.contains("cus_mule_0001"),
        "{blocks}"
    );

    // A compliance officer has no risk permission: no links, refused.
    let mut officer = staff_console(&web, "officer.rules", vec![Role::ComplianceOfficer]).await;
    let (_, home, _) = web.get(&mut officer, "/staff").await;
    assert!(
        !links_to(&home, "/staff/risk/rules") && !links_to(&home, "/staff/risk/blocklist"),
        "{home}"
    );
    for path in [
        "/staff/risk/rules".to_string(),
        format!("/staff/risk/rules/{version}/dry-run"),
        "/staff/risk/blocklist".to_string(),
    ] {
        let (status, page, _) = web.get(&mut officer, &path).await;
        assert_eq!(status, 403, "{path}: {page}");
    }
    let (status, page, _) = web
        .post(
            &mut officer,
            "/staff/risk/rules",
            &[
                ("csrf", &hidden(&home, "csrf")),
                ("idem", "officer-draft-1"),
                ("rules", &good),
            ],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    let (status, page, _) = web
        .post(
            &mut officer,
            &activate,
            &[("csrf", &hidden(&home, "csrf")), ("idem", "officer-act-1")],
        )
        .await;
    assert_eq!(status, 403, "{page}");
}

/// A customer's merchant application, through the API with their session.
async fn apply_for_merchant(web: &Web, customer: &Jar, name: &str) -> String {
    let token = customer.0.get("coffer_session").expect("session").clone();
    let response = web
        .client
        .post(format!("{}/v1/me/merchants", web.base))
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", format!("apply-{}", name.len()))
        .header("content-type", "application/json")
        .body(json!({"display_name": name, "city": "Hangzhou", "mcc": "5812", "bank_code": "ICBC", "account_number": "6222000033334444"}).to_string())
        .send()
        .await
        .expect("apply");
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_application_is_approved_from_the_console() {
    let web = spawn_web().await;
    let (owner, _) = sign_up(&web, "+8613800138301", "周杰").await;
    let merchant_id = apply_for_merchant(&web, &owner, "West Lake Noodles").await;

    let mut analyst = staff_console(&web, "analyst.merchants", vec![Role::RiskAnalyst]).await;
    let (status, _, _) = web.get(&mut analyst, "/staff/merchants").await;
    assert_eq!(status, 403);

    let mut officer = staff_console(&web, "officer.merchants", vec![Role::ComplianceOfficer]).await;
    let (_, home, _) = web.get(&mut officer, "/staff").await;
    assert!(links_to(&home, "/staff/merchants"), "{home}");
    let (status, queue, _) = web.get(&mut officer, "/staff/merchants").await;
    assert_eq!(status, 200, "{queue}");
    let detail = format!("/staff/merchants/{merchant_id}");
    assert!(
        queue.contains("West Lake Noodles") && links_to(&queue, &detail),
        "{queue}"
    );
    let (status, page, _) = web.get(&mut officer, &detail).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("data-status=\"pending_review\""), "{page}");

    // A rate out of range: the API's refusal by the form, nothing decided.
    let review = format!("{detail}/review");
    let (status, refused, _) = web
        .post(
            &mut officer,
            &review,
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("note", "documents checked"),
                ("discount_rate_bps", "5000"),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    assert!(
        refused.contains("discount_rate_bps") && refused.contains("data-status=\"pending_review\""),
        "{refused}"
    );

    let (status, _, headers) = web
        .post(
            &mut officer,
            &review,
            &[
                ("csrf", &hidden(&refused, "csrf")),
                ("idem", &hidden(&refused, "idem")),
                ("note", "documents checked"),
                ("discount_rate_bps", ""),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&mut officer, &location(&headers)).await;
    assert!(
        page.contains("data-status=\"approved\"") && !page.contains(&review),
        "{page}"
    );
    let (_, queue, _) = web.get(&mut officer, "/staff/merchants").await;
    assert!(
        !queue.contains("West Lake Noodles"),
        "left the queue:\n{queue}"
    );

    // The owner's merchant is approved: it can take payments now.
    let token = owner.0.get("coffer_session").expect("session").clone();
    let mine = web
        .client
        .get(format!("{}/v1/me/merchants", web.base))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let mine: Value = serde_json::from_str(&mine).expect("json");
    let status = mine["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["id"] == merchant_id.as_str())
        .map(|m| m["status"].clone());
    assert_eq!(status, Some(json!("approved")), "{mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_created_from_the_console() {
    let web = spawn_web().await;
    let mut officer = staff_console(&web, "officer.campaigns", vec![Role::ComplianceOfficer]).await;
    let (_, home, _) = web.get(&mut officer, "/staff").await;
    assert!(!links_to(&home, "/staff/campaigns"), "{home}");
    let (status, _, _) = web.get(&mut officer, "/staff/campaigns").await;
    assert_eq!(status, 403);

    let mut pm = staff_console(&web, "pm.campaigns", vec![Role::ProductManager]).await;
    let (_, home, _) = web.get(&mut pm, "/staff").await;
    assert!(links_to(&home, "/staff/campaigns"), "{home}");
    let (status, page, _) = web.get(&mut pm, "/staff/campaigns").await;
    assert_eq!(status, 200, "{page}");
    let fields = |page: &str, en_title: &str| {
        vec![
            ("csrf".to_string(), hidden(page, "csrf")),
            ("idem".to_string(), hidden(page, "idem")),
            ("name".to_string(), "Spring noodles".to_string()),
            ("kyc_tier_min".to_string(), "0".to_string()),
            ("active_within_days".to_string(), "30".to_string()),
            ("spending_category".to_string(), "food".to_string()),
            ("spending_within_days".to_string(), String::new()),
            ("en_title".to_string(), en_title.to_string()),
            (
                "en_body".to_string(),
                "10% off at West Lake Noodles".to_string(),
            ),
            ("zh_title".to_string(), "春季面馆优惠".to_string()),
            ("zh_body".to_string(), "西湖面馆九折".to_string()),
        ]
    };
    // No English title: refused by the form, what was typed kept.
    let form = fields(&page, "");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, refused, _) = web.post(&mut pm, "/staff/campaigns", &form).await;
    assert_eq!(status, 200, "{refused}");
    assert!(
        refused.contains("en_title") && refused.contains("西湖面馆九折"),
        "{refused}"
    );

    let form = fields(&refused, "Spring deal");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _, headers) = web.post(&mut pm, "/staff/campaigns", &form).await;
    assert_eq!(status, 303);
    let to = location(&headers);
    assert!(to.starts_with("/staff/campaigns/"), "{to}");
    let (status, campaign, _) = web.get(&mut pm, &to).await;
    assert_eq!(status, 200, "{campaign}");
    assert!(
        campaign.contains("data-state=\"draft\"")
            && campaign.contains("data-testid=\"audience\"")
            && campaign.contains("Spring noodles")
            && campaign.contains("餐饮"),
        "{campaign}"
    );
    let (_, listed, _) = web.get(&mut pm, "/staff/campaigns").await;
    assert!(
        listed.contains("data-testid=\"campaigns\"") && listed.contains("Spring noodles"),
        "{listed}"
    );

    // Sending is proposed for a second staff member to approve.
    let send = form_action(&campaign, "/staff/campaigns/");
    let (status, _, headers) = web
        .post(
            &mut pm,
            &send,
            &[
                ("csrf", &hidden(&campaign, "csrf")),
                ("idem", &hidden(&campaign, "idem")),
                ("reason", "spring promotion"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, proposed, _) = web.get(&mut pm, &location(&headers)).await;
    assert!(proposed.contains("需另一名员工批准发送"), "{proposed}");
    let (_, pending, _) = web.get(&mut officer, "/staff/approvals").await;
    assert!(pending.contains("发送营销活动"), "{pending}");
    // The campaign is no customer, and this officer may not open campaigns:
    // its id is shown, linked nowhere.
    let campaign_page = to.split('?').next().unwrap_or_default();
    let campaign_id = campaign_page.trim_start_matches("/staff/campaigns/");
    assert!(pending.contains(campaign_id), "{pending}");
    assert!(
        !pending.contains(&format!("href=\"/staff/customers/{campaign_id}\""))
            && !pending.contains(&format!("href=\"{campaign_page}\"")),
        "{pending}"
    );
}

/// "Now" a day ahead, so that a message waiting for its next attempt is due.
struct DayAhead;

impl Clock for DayAhead {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(SystemClock.now().as_nanos() + 86_400 * 1_000_000_000)
    }
}

/// A notification that failed every attempt: the sign-up code to a number
/// the simulated gateway cannot reach, delivered by a dispatcher that gives
/// up after one attempt.
async fn dead_letter(web: &Web) {
    let mut visitor = Jar::default();
    let (_, page, _) = web.get(&mut visitor, "/signup").await;
    let (status, page, _) = web
        .post(
            &mut visitor,
            "/signup",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("contact", "+8613810000000"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let state = web.state.clone();
    tokio::task::spawn_blocking(move || {
        let giving_up = coffer_notify::Dispatcher::new(
            state.sql.clone(),
            state.vault.clone(),
            Arc::new(DayAhead),
            vec![Arc::new(coffer_notify::SimulatedTransport::new(
                coffer_notify::Channel::Sms,
            ))],
        )
        .with_policy(coffer_notify::RetryPolicy {
            attempts_max: 1,
            base_seconds: 1,
            cap_seconds: 1,
        });
        for _ in 0..200 {
            giving_up.run_once().expect("dispatch");
            let dead = state
                .sql
                .transaction(|db| coffer_notify::dead_letters(db, 0, 10))
                .expect("dead letters");
            if !dead.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no dead letter");
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_requeued_from_the_console() {
    let web = spawn_web().await;
    dead_letter(&web).await;

    let mut analyst = staff_console(&web, "analyst.notify", vec![Role::RiskAnalyst]).await;
    let (_, home, _) = web.get(&mut analyst, "/staff").await;
    assert!(!links_to(&home, "/staff/notifications"), "{home}");
    let (status, _, _) = web.get(&mut analyst, "/staff/notifications").await;
    assert_eq!(status, 403);

    let mut admin = staff_console(&web, "admin.notify", vec![Role::Administrator]).await;
    let (_, home, _) = web.get(&mut admin, "/staff").await;
    assert!(
        links_to(&home, "/staff/notifications") && links_to(&home, "/staff/settlements"),
        "{home}"
    );
    let (status, page, _) = web.get(&mut admin, "/staff/notifications").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("data-testid=\"dead-letters\"")
            && page.contains("短信")
            && page.contains("recipient unreachable")
            && !page.contains("13810000000"),
        "channel and error shown, the number masked:\n{page}"
    );
    let requeue = form_action(&page, "/staff/notifications/");
    let id = requeue
        .trim_start_matches("/staff/notifications/")
        .trim_end_matches("/requeue")
        .to_string();
    assert!(page.contains(&format!("data-id=\"{id}\"")), "{page}");
    // Without the CSRF token: refused, still dead.
    let (status, _, _) = web.post(&mut admin, &requeue, &[]).await;
    assert_eq!(status, 403);
    let (status, _, headers) = web
        .post(
            &mut admin,
            &requeue,
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, after, _) = web.get(&mut admin, &location(&headers)).await;
    assert!(
        after.contains("已重新排队") && !after.contains(&format!("data-id=\"{id}\"")),
        "{after}"
    );
    // The settlements page opens for the administrator too.
    let (status, settlements, _) = web.get(&mut admin, "/staff/settlements").await;
    assert_eq!(status, 200, "{settlements}");

    // Reconciliation: nothing runs on a plain visit; a connector runs it.
    assert!(links_to(&home, "/staff/reconciliation"), "{home}");
    let (status, page, _) = web.get(&mut admin, "/staff/reconciliation").await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("data-testid=\"matched\""), "{page}");
    let (status, report, _) = web
        .get(&mut admin, "/staff/reconciliation?connector=core_banking")
        .await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report.contains("data-testid=\"matched\"") && report.contains("核心银行系统"),
        "{report}"
    );
    let (status, refused, _) = web
        .get(
            &mut admin,
            "/staff/reconciliation?connector=core_banking&from=2026-13-45",
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    assert!(
        refused.contains("role=\"alert\"") && refused.contains("from"),
        "{refused}"
    );
    let (status, _, _) = web.get(&mut analyst, "/staff/reconciliation").await;
    assert_eq!(status, 403);
}
