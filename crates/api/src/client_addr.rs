//! The client's address behind the bank's own reverse proxies or load
//! balancers.
//!
//! Without configuration the client is the TCP peer, and `X-Forwarded-For` is
//! ignored (any client can write it). When the peer is one of the configured
//! trusted proxies, the client is the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy: each proxy appends
//! the address it saw, so everything left of the first untrusted hop may be
//! forged and is skipped. The middleware rewrites the request's `ConnectInfo`
//! to that address, so the rate limits, the throttles, sessions' device
//! lists and the audit log all see the customer, not the load balancer.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xFFu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

/// The trusted proxies (empty: trust none).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client address for a request from `peer` carrying these
    /// `X-Forwarded-For` values (in header order).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .map_while(|hop| hop.parse::<IpAddr>().ok())
            .collect();
        // Right to left: the first hop no trusted proxy vouches for.
        hops.iter()
            .rev()
            .copied()
            .find(|hop| !self.trusts(*hop))
            .or_else(|| hops.first().copied())
            .unwrap_or(peer)
    }
}

/// The middleware; a no-op when no proxy is trusted.
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if state.trusted_proxies.0.is_empty() {
        return next.run(request).await;
    }
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = state.trusted_proxies.client(peer.ip(), &forwarded);
        if client != peer.ip() {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies(
            blocks
                .iter()
                .map(|b| Cidr::parse(b).expect("cidr"))
                .collect(),
        )
    }

    #[test]
    fn blocks_parse_and_match() {
        let block = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("192.168.1.7")
            .expect("one")
            .contains(ip("192.168.1.7")));
        assert!(!Cidr::parse("192.168.1.7")
            .expect("one")
            .contains(ip("192.168.1.8")));
        assert!(Cidr::parse("fd00::/8").expect("v6").contains(ip("fd12::1")));
        assert!(!Cidr::parse("fd00::/8")
            .expect("v6")
            .contains(ip("10.0.0.1")));
        assert!(Cidr::parse("10.1.0.0/33").is_err());
        assert!(Cidr::parse("proxy.local").is_err());
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("8.8.8.8")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &["1.2.3.4"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // client → 10.0.0.5 (LB) → 10.0.0.6 (ingress) → us
        assert_eq!(
            trusted.client(ip("10.0.0.6"), &["198.51.100.7, 10.0.0.5"]),
            ip("198.51.100.7")
        );
        // A forged left-most entry is skipped: the proxy appended the real peer.
        assert_eq!(
            trusted.client(ip("10.0.0.6"), &["6.6.6.6, 198.51.100.7", "10.0.0.5"]),
            ip("198.51.100.7")
        );
        // Garbage stops the walk; no header at all leaves the proxy.
        assert_eq!(trusted.client(ip("10.0.0.6"), &[]), ip("10.0.0.6"));
        assert_eq!(
            trusted.client(ip("10.0.0.6"), &["not-an-ip"]),
            ip("10.0.0.6")
        );
    }
}
