//! Counters and histograms the engine keeps for `/metrics` and benchmarks.
//! Plain atomics: the writer thread records, anyone reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
/// Upper bounds of the batch-size buckets, in events.
pub const BATCH_BUCKETS: [u64; 8] = [1, 4, 16, 64, 256, 1_024, 4_096, 8_192];

/// A cumulative histogram with fixed buckets (Prometheus style).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [u64; N],
    counts: [AtomicU64; N],
    sum: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        if let Some(slot) = self.bounds.iter().position(|&bound| value <= bound) {
            self.counts[slot].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(upper bound, cumulative count)` per bucket, then the sum and the total count.
    pub fn snapshot(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&bound, count)| {
                running += count.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        (
            buckets,
            self.sum.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug)]
pub struct EngineStats {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub transfers: AtomicU64,
    pub expired_holds: AtomicU64,
    pub duplicate_retries: AtomicU64,
    pub commit_failures: AtomicU64,
    pub overloaded: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Time the database commit took, in microseconds.
    pub commit_latency_us: Histogram<12>,
    /// Events per committed batch.
    pub batch_size: Histogram<8>,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            batches: AtomicU64::new(0),
            events: AtomicU64::new(0),
            transfers: AtomicU64::new(0),
            expired_holds: AtomicU64::new(0),
            duplicate_retries: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            commit_latency_us: Histogram::new(LATENCY_BUCKETS_US),
            batch_size: Histogram::new(BATCH_BUCKETS),
        }
    }
}

impl EngineStats {
    pub(crate) fn record_batch(
        &self,
        events: usize,
        transfers: usize,
        expired: usize,
        commit: Duration,
    ) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.transfers
            .fetch_add(transfers as u64, Ordering::Relaxed);
        self.expired_holds
            .fetch_add(expired as u64, Ordering::Relaxed);
        self.commit_latency_us
            .observe(u64::try_from(commit.as_micros()).unwrap_or(u64::MAX));
        self.batch_size.observe(events as u64);
    }
}
