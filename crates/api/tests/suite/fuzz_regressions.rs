//! What fuzzing the API from its OpenAPI document (`scripts/fuzz-api`) and
//! writing the document turned up, kept fixed.

use crate::support::spawn_app;
use serde_json::json;

fn error(value: &serde_json::Value) -> (Option<&str>, Option<&str>) {
    (
        value["error"]["code"].as_str(),
        value["error"]["field"].as_str(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hold_timeout_fails_the_request_even_in_a_batch() {
    let app = spawn_app().await;
    let member = json!({"id": "h1", "debit_account_id": "a", "credit_account_id": "b",
        "amount": 1, "currency": "CNY", "code": "auth", "timeout_ms": 0});
    // It used to be accepted (200) and reported as a rejected member.
    let (status, value) = app
        .post(
            "/v1/ledger/transfers/batch",
            "b1",
            &json!({"transfers": [member]}),
        )
        .await;
    assert_eq!(
        (status, error(&value)),
        (
            422,
            (Some("invalid_timeout"), Some("transfers[0].timeout_ms"))
        ),
        "{value}"
    );
    let (status, value) = app.post("/v1/ledger/holds", "h1", &member).await;
    assert_eq!(
        (status, error(&value)),
        (422, (Some("invalid_timeout"), Some("timeout_ms"))),
        "{value}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_rejects_the_fields_of_another_by_name() {
    let app = spawn_app().await;
    let transfer = json!({"id": "t1", "debit_account_id": "a", "credit_account_id": "b",
        "amount": 1, "currency": "CNY", "code": "p", "timeout_ms": 1000});
    let (status, value) = app.post("/v1/ledger/transfers", "t1", &transfer).await;
    assert_eq!(
        (status, error(&value)),
        (422, (Some("invalid_field"), Some("timeout_ms"))),
        "{value}"
    );
    let release = json!({"id": "r1", "code": "release", "amount": 5});
    let (status, value) = app
        .post("/v1/ledger/holds/h1/release", "r1", &release)
        .await;
    assert_eq!(
        (status, error(&value)),
        (422, (Some("invalid_field"), Some("amount"))),
        "{value}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_time_offset_is_a_client_error_not_a_panic() {
    let app = spawn_app().await;
    let opened = json!({"id": "alice", "currency": "CNY", "kind": "liability", "owner": "o"});
    assert_eq!(app.post("/v1/ledger/accounts", "a1", &opened).await.0, 201);
    // `+aé12`: slicing it at byte 3 used to panic and drop the connection.
    let (status, _, value) = app
        .get("/v1/ledger/accounts/alice?as_of=2000-01-01T00:00:00%2Ba%C3%A912")
        .await;
    assert_eq!(
        (status, error(&value)),
        (422, (Some("invalid_field"), Some("as_of"))),
        "{value}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_path_gets_the_one_error_shape() {
    let app = spawn_app().await;
    // Invalid UTF-8 once percent-decoded: axum's own rejection was plain text.
    let (status, content_type, value) = app.get("/v1/ledger/accounts/%FF").await;
    assert_eq!(content_type, "application/json");
    assert_eq!(
        (status, error(&value)),
        (422, (Some("invalid_field"), Some("id"))),
        "{value}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_size_page_still_says_more_follow() {
    let app = spawn_app().await;
    for (id, kind) in [("bank", "asset"), ("alice", "liability")] {
        let account = json!({"id": id, "currency": "CNY", "kind": kind, "owner": "o"});
        assert_eq!(app.post("/v1/ledger/accounts", id, &account).await.0, 201);
    }
    let page_size_max = coffer_store::PAGE_SIZE_MAX;
    let transfers: Vec<_> = (0..=page_size_max)
        .map(|n| {
            json!({"id": format!("t{n}"), "debit_account_id": "bank", "credit_account_id": "alice",
                "amount": 1, "currency": "CNY", "code": "p"})
        })
        .collect();
    let (status, value) = app
        .post(
            "/v1/ledger/transfers/batch",
            "batch",
            &json!({"transfers": transfers}),
        )
        .await;
    assert_eq!((status, &value["ok"]), (200, &json!(true)));
    // The read behind a page of PAGE_SIZE_MAX was clamped to PAGE_SIZE_MAX
    // rows, losing the look-ahead row: the last page looked complete.
    let (status, _, page) = app
        .get(&format!(
            "/v1/ledger/accounts/alice/entries?limit={page_size_max}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(page_size_max));
    let cursor = page["next_cursor"].as_str().expect("a next_cursor");
    let (_, _, rest) = app
        .get(&format!(
            "/v1/ledger/accounts/alice/entries?limit={page_size_max}&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(1));
    assert!(rest.get("next_cursor").is_none());
}
