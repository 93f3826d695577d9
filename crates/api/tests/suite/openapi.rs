//! The OpenAPI document: the checked-in copy is current, it names exactly the
//! routes the router serves, every operation states the API's conventions,
//! and the server serves it and its reference page without a key.
//!
//! Regenerate the checked-in copy with
//! `COFFER_UPDATE_OPENAPI=1 cargo test -p coffer-api --test suite openapi`.

use std::collections::BTreeSet;

use crate::support::spawn_app;
use serde_json::Value;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
const REGENERATE: &str = "COFFER_UPDATE_OPENAPI=1 cargo test -p coffer-api --test suite openapi";

fn document() -> Value {
    serde_json::from_str(&coffer_api::openapi::document()).expect("the document is JSON")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (METHOD, path, operation) in the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

#[test]
fn checked_in_document_is_current() {
    let generated = coffer_api::openapi::document();
    if std::env::var_os("COFFER_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.json is stale: it differs from the document the code generates \
             from line {} on. Regenerate it with `{REGENERATE}` and commit it.",
            first_difference + 1
        );
    }
}

#[test]
fn document_names_exactly_the_served_routes() {
    let documented: BTreeSet<(String, String)> = operations(&document())
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = coffer_api::routes()
        .served()
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented: add #[utoipa::path] and list it in ApiDoc"
    );
}

#[test]
fn every_operation_states_the_conventions() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "Coffer API");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let responses = &document["components"]["responses"];
    for (method, path, operation) in operations(&document) {
        let name = format!("{method} {path}");
        assert!(operation["summary"].is_string(), "{name}: summary");
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let idempotency_key = parameters.iter().find(|p| p["name"] == "Idempotency-Key");
        // Customer routes that answer with a secret (a session token, a TOTP
        // seed, recovery codes) are not replayed from storage, so they take
        // no Idempotency-Key; each is safe to retry by construction.
        let issues_secrets = [
            "POST /v1/auth/registrations/{id}/complete",
            "POST /v1/auth/sessions",
            "POST /v1/auth/challenges/{id}/verify",
            "POST /v1/me/factors/totp",
            "POST /v1/me/factors/totp/confirm",
            "POST /v1/staff/sessions",
            "POST /v1/auth/passkeys/challenges/{id}/verify",
            "POST /v1/me/merchants/{id}/api-keys",
            "POST /v1/me/merchants/{id}/webhook",
            "POST /v1/me/payment-codes",
        ]
        .contains(&name.as_str());
        // POSTs that change nothing (a scanned payload or a photo to check
        // and preview travel in the body): no Idempotency-Key to take.
        let read_only = [
            "POST /v1/me/merchant-payments/scan",
            "POST /v1/me/merchant-payments/scan-image",
        ]
        .contains(&name.as_str());
        // Connector callbacks carry no Idempotency-Key (a network sends
        // none): they are idempotent by their event id and by the state of
        // the operation they resolve, and authenticated by their signature.
        let is_webhook = path.starts_with("/v1/webhooks/");
        if path.starts_with("/v1/ledger/") {
            let scope = if method == "GET" {
                "ledger:read"
            } else {
                "ledger:write"
            };
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "api_key": [scope] }]),
                "{name}: security"
            );
            for code in ["401", "403", "500"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
        } else if path == "/v1/me"
            || path.starts_with("/v1/me/")
            || name == "DELETE /v1/auth/sessions/current"
        {
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "session": [] }]),
                "{name}: security"
            );
            for code in ["401", "500"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
        } else if path.starts_with("/v1/staff/") && name != "POST /v1/staff/sessions" {
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "staff": [] }]),
                "{name}: security"
            );
            for code in ["401", "403", "500"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
        } else if path == "/v1/merchant"
            || path.starts_with("/v1/merchant/")
            || path.starts_with("/v1/partner/")
        {
            // A merchant's or partner's systems: an API key with a
            // `merchant:<id>` or `partner:<id>` scope.
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "api_key": [] }]),
                "{name}: security"
            );
            for code in ["401", "403", "500"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
        } else if path.starts_with("/v1/") {
            assert!(operation.get("security").is_none(), "{name}: public");
        }
        if is_webhook {
            assert!(idempotency_key.is_none(), "{name}: no Idempotency-Key");
            let signature = parameters.iter().find(|p| p["name"] == "Coffer-Signature");
            assert!(signature.is_some(), "{name}: the signature header");
            for code in ["400", "401", "413", "422", "503"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
        } else if method == "POST" && !issues_secrets && !read_only {
            let key = idempotency_key.unwrap_or_else(|| panic!("{name}: Idempotency-Key"));
            assert_eq!(key["in"], "header");
            assert_eq!(key["required"], true);
            for code in ["400", "409", "413", "422", "503"] {
                assert!(operation["responses"].get(code).is_some(), "{name}: {code}");
            }
            if let Some(body) = operation.get("requestBody") {
                let reference = body["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: body schema"));
                let schema_name = reference.rsplit('/').next().unwrap_or_default();
                let schema = &document["components"]["schemas"][schema_name];
                assert_eq!(
                    schema["additionalProperties"], false,
                    "{name}: the handler denies unknown fields"
                );
            }
        } else {
            assert!(
                idempotency_key.is_none(),
                "{name}: Idempotency-Key where none is taken"
            );
        }
        // Every error response carries the one error shape.
        for (status, response) in operation["responses"].as_object().expect("responses") {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let response = match response["$ref"].as_str() {
                Some(reference) => &responses[reference.rsplit('/').next().unwrap_or_default()],
                None => response,
            };
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{name}: {status}"
            );
        }
    }
}

#[test]
fn amounts_are_int64_minor_units_of_at_least_one() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    for name in [
        "TransferRequest",
        "HoldRequest",
        "BatchTransferRequest",
        "TransferView",
        "HoldView",
    ] {
        let amount = &schemas[name]["properties"]["amount"];
        assert_eq!(amount["type"], "integer", "{name}");
        assert_eq!(amount["format"], "int64", "{name}");
        assert_eq!(amount["minimum"], 1, "{name}");
        assert!(
            schemas[name]["properties"]["currency"].is_object(),
            "{name}: an amount goes with a currency"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_and_reference_are_served_without_a_key() {
    let app = spawn_app().await;
    let (base, client) = (&app.base, &app.client);

    let response = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    assert_eq!(
        response.text().await.expect("text"),
        coffer_api::openapi::document()
    );

    let response = client
        .get(format!("{base}/docs"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("text/html; charset=utf-8")
    );
    let page = response.text().await.expect("text");
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("Coffer API"));
    // Rendered by the server: nothing to fetch, nothing to run.
    assert!(!page.contains("<script"), "the page needs no script");
    assert!(
        !page.contains("https://"),
        "the page loads nothing external"
    );
    for (method, path, operation) in operations(&document()) {
        assert!(
            page.contains(&format!("<code>{path}</code>")),
            "{method} {path} is not on /docs"
        );
        let summary = operation["summary"].as_str().expect("summary");
        assert!(page.contains(summary), "{method} {path}: summary");
    }
    for code in [
        "insufficient_funds",
        "idempotency_key_reused",
        "unauthorized",
    ] {
        assert!(page.contains(code), "error code {code} is not on /docs");
    }
}
