//! Browser-facing security headers on every response. They are defaults: a
//! handler that sets one of them itself (a web page with its own
//! Content-Security-Policy) keeps its value.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// A year, subdomains included: the bank's domain is HTTPS-only. Browsers
/// ignore the header on plain HTTP, so local development is unaffected.
pub const STRICT_TRANSPORT_SECURITY_VALUE: &str = "max-age=31536000; includeSubDomains";
/// JSON loads nothing and may be framed by nobody.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; frame-ancestors 'none'";

const DEFAULTS: [(HeaderName, &str); 5] = [
    (STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY_VALUE),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (REFERRER_POLICY, "no-referrer"),
    (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
];

/// Balances, statements and session data must not linger in any cache.
fn is_api(path: &str) -> bool {
    path.strip_prefix("/v1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub async fn add(request: Request, next: Next) -> Response {
    let api = is_api(request.uri().path());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in DEFAULTS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if api {
        headers
            .entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_handlers_own_policy_is_kept_and_only_v1_is_no_store() {
        let app = Router::new()
            .route(
                "/page",
                get(|| async { ([(CONTENT_SECURITY_POLICY, "default-src 'self'")], "page") }),
            )
            .route("/v1/thing", get(|| async { "{}" }))
            .layer(axum::middleware::from_fn(add));
        let get = |path: &'static str| {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        };
        let page = get("/page").await.expect("page");
        assert_eq!(
            page.headers()[CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(page.headers()[X_FRAME_OPTIONS], "DENY");
        assert!(page.headers().get(CACHE_CONTROL).is_none());
        let api = get("/v1/thing").await.expect("api");
        assert_eq!(
            api.headers()[CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_VALUE
        );
        assert_eq!(api.headers()[CACHE_CONTROL], "no-store");
        assert!(!is_api("/v10/x") && is_api("/v1") && is_api("/v1/me"));
    }
}
