//! Request rate limits per client address: a token bucket per address (per
//! /64 for IPv6, since one host is usually given a whole /64), kept in memory
//! in a map of bounded size. The unauthenticated `/v1/auth` routes, where
//! credential stuffing and code guessing happen, get a tighter rate than the
//! rest. Over the limit a request is answered 429 `rate_limited` with
//! `Retry-After`, before any handler runs.
//!
//! The address is the TCP peer (`ConnectInfo`), which `client_addr` has
//! already replaced by the real client when the peer is a configured trusted
//! proxy; otherwise forwarded-for headers are not believed (any client can
//! write them).
//!
//! Counting is in integer nano-tokens (no floats anywhere in Coffer): a
//! request costs `TOKEN_NANOS`, and a bucket refills `per_second` tokens per
//! second, i.e. `per_second` nano-tokens per elapsed nanosecond.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

const TOKEN_NANOS: u128 = 1_000_000_000;
/// When the map is full, idle buckets are swept out at most this often; in
/// between, new addresses share one overflow bucket. A flood of fresh
/// addresses thus costs one sweep per interval, not one per request.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Paths under this prefix get the authentication rate.
pub const AUTH_PATH_PREFIX: &str = "/v1/auth";

/// A sustained rate and the burst a client may spend at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second refilled; 0 turns limiting off.
    pub per_second: u32,
    /// The bucket's size: requests a client may send back to back.
    pub burst: u32,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: 0,
        burst: 0,
    };

    /// `per_second` with a burst of two seconds' worth (0: no limit).
    pub fn per_second(per_second: u32) -> Rate {
        Rate {
            per_second,
            burst: per_second.saturating_mul(2),
        }
    }

    fn is_unlimited(self) -> bool {
        self.per_second == 0
    }
}

/// The limits, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// For `/v1/auth/…`: sign-in, registration, second-factor answers.
    pub auth: Rate,
    /// For every other route.
    pub general: Rate,
    /// Addresses tracked per class; beyond it, new addresses share a bucket.
    pub clients_max: usize,
}

/// The default `/v1/auth` rate per address: a person signs in a few times a
/// day; a shared NAT (an office, a mobile carrier) may carry many people.
pub const AUTH_PER_SECOND_DEFAULT: u32 = 50;
/// The default rate per address elsewhere: high enough for a bank's own
/// systems calling the ledger API from a few addresses.
pub const GENERAL_PER_SECOND_DEFAULT: u32 = 1_000;
pub const CLIENTS_MAX_DEFAULT: usize = 100_000;

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            auth: Rate::per_second(AUTH_PER_SECOND_DEFAULT),
            general: Rate::per_second(GENERAL_PER_SECOND_DEFAULT),
            clients_max: CLIENTS_MAX_DEFAULT,
        }
    }
}

impl RateLimits {
    pub const UNLIMITED: RateLimits = RateLimits {
        auth: Rate::UNLIMITED,
        general: Rate::UNLIMITED,
        clients_max: 0,
    };
}

/// Where a bucket's address is grouped: the whole address for IPv4, the
/// /64 network for IPv6.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // Distinct from every IPv4 key: a v6 /64 prefix sets high bits.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | (1 << 32),
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    nano_tokens: u128,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            nano_tokens: capacity(rate),
            updated: now,
        }
    }

    /// Refills for the time since the last call, then takes one token or
    /// says how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        self.updated = now;
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(elapsed.saturating_mul(u128::from(rate.per_second)))
            .min(capacity(rate));
        if self.nano_tokens >= TOKEN_NANOS {
            self.nano_tokens -= TOKEN_NANOS;
            return Ok(());
        }
        let missing = TOKEN_NANOS - self.nano_tokens;
        let wait_nanos = missing.div_ceil(u128::from(rate.per_second.max(1)));
        Err(Duration::from_nanos(
            u64::try_from(wait_nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Idle long enough to be full again: forgetting it changes nothing.
    fn is_refilled(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        self.nano_tokens
            .saturating_add(elapsed.saturating_mul(u128::from(rate.per_second)))
            >= capacity(rate)
    }
}

fn capacity(rate: Rate) -> u128 {
    u128::from(rate.burst.max(1)) * TOKEN_NANOS
}

struct Buckets {
    by_client: HashMap<u128, Bucket>,
    /// Shared by addresses that arrive while the map is full.
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

/// One class of routes: a rate and its buckets.
struct Limiter {
    rate: Rate,
    clients_max: usize,
    buckets: Mutex<Buckets>,
}

impl Limiter {
    fn new(rate: Rate, clients_max: usize, now: Instant) -> Limiter {
        Limiter {
            rate,
            clients_max,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                overflow: Bucket::full(rate, now),
                last_sweep: None,
            }),
        }
    }

    fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        let rate = self.rate;
        // A poisoned lock only means another request panicked mid-update;
        // the buckets are still usable numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = client_key(ip);
        if !buckets.by_client.contains_key(&key) && buckets.by_client.len() >= self.clients_max {
            let may_sweep = buckets
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_INTERVAL);
            if may_sweep {
                buckets.last_sweep = Some(now);
                buckets.by_client.retain(|_, b| !b.is_refilled(rate, now));
            }
            if buckets.by_client.len() >= self.clients_max {
                return buckets.overflow.take(rate, now);
            }
        }
        buckets
            .by_client
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_client
            .len()
    }
}

/// The limiters of one server.
pub struct RateLimiter {
    limits: RateLimits,
    auth: Limiter,
    general: Limiter,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            limits,
            auth: Limiter::new(limits.auth, limits.clients_max, now),
            general: Limiter::new(limits.general, limits.clients_max, now),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Takes a token for a request to `path` from `ip`, or says how long
    /// the client should wait.
    pub fn admit(&self, path: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let is_auth = path
            .strip_prefix(AUTH_PATH_PREFIX)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if is_auth {
            self.auth.admit(ip, now)
        } else {
            self.general.admit(ip, now)
        }
    }
}

/// The middleware: 429 `rate_limited` with `Retry-After` (whole seconds,
/// rounded up) over the limit. Requests without a peer address (tests that
/// call the router directly) are not limited.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    match state
        .rate_limiter
        .admit(request.uri().path(), peer.ip(), Instant::now())
    {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this address; retry in {seconds} s"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills() {
        let start = Instant::now();
        let limiter = Limiter::new(
            Rate {
                per_second: 10,
                burst: 3,
            },
            10,
            start,
        );
        let client = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.admit(client, start), Ok(()));
        }
        assert_eq!(
            limiter.admit(client, start),
            Err(Duration::from_millis(100))
        );
        // Another address has its own bucket.
        assert_eq!(limiter.admit(ip("192.0.2.2"), start), Ok(()));
        // 100 ms later one token is back, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.admit(client, later), Ok(()));
        assert!(limiter.admit(client, later).is_err());
        // Never more than the burst, however long the pause.
        let much_later = later + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(limiter.admit(client, much_later), Ok(()));
        }
        assert!(limiter.admit(client, much_later).is_err());
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64() {
        let start = Instant::now();
        let limiter = Limiter::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            10,
            start,
        );
        assert_eq!(limiter.admit(ip("2001:db8:1:2::1"), start), Ok(()));
        assert!(limiter.admit(ip("2001:db8:1:2::ffff"), start).is_err());
        assert_eq!(limiter.admit(ip("2001:db8:1:3::1"), start), Ok(()));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(limiter.admit(ip("192.0.2.9"), start), Ok(()));
        assert!(limiter.admit(ip("::ffff:192.0.2.9"), start).is_err());
    }

    #[test]
    fn the_map_stays_bounded_and_overflow_is_shared() {
        let start = Instant::now();
        let limiter = Limiter::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            2,
            start,
        );
        assert_eq!(limiter.admit(ip("192.0.2.1"), start), Ok(()));
        assert_eq!(limiter.admit(ip("192.0.2.2"), start), Ok(()));
        // Full of active clients: newcomers share the overflow bucket.
        assert_eq!(limiter.admit(ip("192.0.2.3"), start), Ok(()));
        assert_eq!(limiter.admit(ip("192.0.2.4"), start), Ok(()));
        assert!(limiter.admit(ip("192.0.2.5"), start).is_err());
        assert_eq!(limiter.tracked(), 2);
        // Once the first clients are idle (refilled), a sweep makes room.
        let later = start + Duration::from_secs(5);
        assert_eq!(limiter.admit(ip("192.0.2.5"), later), Ok(()));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn auth_routes_have_their_own_rate_and_zero_turns_limiting_off() {
        let now = Instant::now();
        let limiter = RateLimiter::new(RateLimits {
            auth: Rate {
                per_second: 1,
                burst: 1,
            },
            general: Rate::UNLIMITED,
            clients_max: 10,
        });
        let client = ip("192.0.2.1");
        assert_eq!(limiter.admit("/v1/auth/sessions", client, now), Ok(()));
        assert!(limiter
            .admit("/v1/auth/registrations", client, now)
            .is_err());
        for _ in 0..100 {
            assert_eq!(limiter.admit("/v1/authority", client, now), Ok(()));
            assert_eq!(limiter.admit("/v1/me", client, now), Ok(()));
        }
    }
}
