//! The background work of funding: delivering the simulated connectors'
//! callbacks, and the resolver that asks connectors about operations whose
//! callback is overdue (and carries forward any record a crash left between
//! steps).
//!
//! The simulators' callbacks go through the same router (and so the same
//! signature check and handler) that a real network's HTTPS request reaches;
//! they are handed to it in process rather than over a socket, so that no
//! TLS client or own address is needed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use coffer_core::Clock;
use coffer_payments::{ConnectorKind, Funding, Simulator};
use tower::ServiceExt;

/// Where each connector's callbacks arrive.
pub fn webhook_path(kind: ConnectorKind) -> &'static str {
    match kind {
        ConnectorKind::CardNetwork => "/v1/webhooks/card-network",
        ConnectorKind::CoreBanking => "/v1/webhooks/core-banking",
    }
}

/// Delivers every due callback of `simulators` to `router` once; returns
/// how many were delivered.
pub async fn deliver_due(
    router: &Router,
    simulators: &[Arc<Simulator>],
    clock: &Arc<dyn Clock>,
) -> usize {
    let mut delivered = 0;
    for simulator in simulators {
        let simulator = simulator.clone();
        let now = clock.now().as_nanos();
        let due = match tokio::task::spawn_blocking(move || simulator.take_due(now)).await {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => {
                tracing::warn!(%error, "simulated connector: cannot read its callbacks");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "simulated connector task failed");
                continue;
            }
        };
        for callback in due {
            let request = Request::post(webhook_path(callback.connector))
                .header("content-type", "application/json")
                .header(coffer_payments::SIGNATURE_HEADER, &callback.signature)
                .body(Body::from(callback.body));
            let Ok(request) = request else { continue };
            match router.clone().oneshot(request).await {
                Ok(response) if response.status().is_success() => delivered += 1,
                Ok(response) => {
                    // A real network would retry; the resolver's status
                    // query covers a callback that never lands.
                    tracing::warn!(status = %response.status(), "simulated callback refused");
                }
                Err(error) => tracing::warn!(%error, "simulated callback failed"),
            }
        }
    }
    delivered
}

/// Runs forever: delivers due callbacks and runs the resolver every `interval`.
pub async fn run(
    router: Router,
    simulators: Vec<Arc<Simulator>>,
    funding: Arc<Funding>,
    clock: Arc<dyn Clock>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        deliver_due(&router, &simulators, &clock).await;
        let funding = funding.clone();
        match tokio::task::spawn_blocking(move || funding.resolve_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "funding resolver pass failed"),
            Err(error) => tracing::warn!(%error, "funding resolver task failed"),
        }
    }
}

/// Runs forever: every `interval`, asks billers about bill payments they
/// did not answer and finishes conversions a crash left behind.
pub async fn run_wallet_resolvers(
    bills: Arc<coffer_payments::Bills>,
    fx: Arc<coffer_payments::Fx>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let (bills, fx) = (bills.clone(), fx.clone());
        let pass = tokio::task::spawn_blocking(move || {
            if let Err(error) = bills.resolve_pending() {
                tracing::warn!(%error, "bill payment resolver pass failed");
            }
            if let Err(error) = fx.resolve_pending() {
                tracing::warn!(%error, "conversion resolver pass failed");
            }
        })
        .await;
        if let Err(error) = pass {
            tracing::warn!(%error, "wallet resolver task failed");
        }
    }
}
