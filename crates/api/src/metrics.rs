//! `/metrics` in Prometheus text format: requests by route, method and
//! status with latency, and the ledger engine's counters and histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use coffer_app::EngineStats;

const LATENCY_BOUNDS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 1_000, 5_000];

#[derive(Default)]
struct RouteStats {
    count: u64,
    sum_us: u64,
    buckets: [u64; LATENCY_BOUNDS_MS.len()],
}

#[derive(Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
}

impl HttpMetrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = routes
            .entry((route.to_string(), method.to_string(), status))
            .or_default();
        stats.count += 1;
        stats.sum_us += u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        for (slot, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
            if ms < *bound {
                stats.buckets[slot] += 1;
            }
        }
    }

    pub fn render(&self, engine: &EngineStats, pool: Option<(usize, usize)>) -> String {
        let mut out = String::new();
        out.push_str("# HELP coffer_http_requests_total HTTP requests by route, method and status.\n# TYPE coffer_http_requests_total counter\n");
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, method, status), stats) in routes.iter() {
            let _ = writeln!(out, "coffer_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}", stats.count);
        }
        out.push_str("# HELP coffer_http_request_duration_seconds HTTP request latency.\n# TYPE coffer_http_request_duration_seconds histogram\n");
        for ((route, method, status), stats) in routes.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (slot, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "coffer_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                    seconds(*bound * 1_000),
                    stats.buckets[slot]
                );
            }
            let _ = writeln!(
                out,
                "coffer_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "coffer_http_request_duration_seconds_sum{{{labels}}} {}",
                seconds(stats.sum_us)
            );
            let _ = writeln!(
                out,
                "coffer_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count
            );
        }
        drop(routes);
        let counters = [
            (
                "coffer_ledger_batches_total",
                "Batches committed.",
                &engine.batches,
            ),
            (
                "coffer_ledger_events_total",
                "Events (transfers, account changes) committed.",
                &engine.events,
            ),
            (
                "coffer_ledger_transfers_committed_total",
                "Transfers committed.",
                &engine.transfers,
            ),
            (
                "coffer_ledger_holds_expired_total",
                "Holds released by timeout.",
                &engine.expired_holds,
            ),
            (
                "coffer_ledger_commit_failures_total",
                "Commits that failed.",
                &engine.commit_failures,
            ),
            (
                "coffer_ledger_overloaded_total",
                "Requests refused because the queue was full.",
                &engine.overloaded,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let (buckets, sum, count) = engine.commit_latency_us.snapshot();
        out.push_str("# HELP coffer_ledger_commit_seconds Durable commit latency per batch.\n# TYPE coffer_ledger_commit_seconds histogram\n");
        for (bound, cumulative) in buckets {
            let _ = writeln!(
                out,
                "coffer_ledger_commit_seconds_bucket{{le=\"{}\"}} {cumulative}",
                seconds(bound)
            );
        }
        let _ = writeln!(out, "coffer_ledger_commit_seconds_bucket{{le=\"+Inf\"}} {count}\ncoffer_ledger_commit_seconds_sum {}\ncoffer_ledger_commit_seconds_count {count}", seconds(sum));
        let (buckets, sum, count) = engine.batch_size.snapshot();
        out.push_str("# HELP coffer_ledger_batch_events Events per committed batch.\n# TYPE coffer_ledger_batch_events histogram\n");
        for (bound, cumulative) in buckets {
            let _ = writeln!(
                out,
                "coffer_ledger_batch_events_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "coffer_ledger_batch_events_bucket{{le=\"+Inf\"}} {count}\ncoffer_ledger_batch_events_sum {sum}\ncoffer_ledger_batch_events_count {count}");
        if let Some((open, idle)) = pool {
            let _ = writeln!(out, "# HELP coffer_db_pool_connections Read pool connections.\n# TYPE coffer_db_pool_connections gauge\ncoffer_db_pool_connections{{state=\"open\"}} {open}\ncoffer_db_pool_connections{{state=\"idle\"}} {idle}");
        }
        out
    }
}

/// Microseconds as decimal seconds, exactly (no floats).
fn seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}
