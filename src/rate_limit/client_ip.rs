//! Which address a request comes from, for per-IP limits.
//!
//! The TCP peer, unless the peer is one of the configured trusted proxies:
//! then `X-Forwarded-For` is read from the right (each proxy appends the
//! address it received the request from), skipping entries that are trusted
//! proxies themselves; the first other entry is the client. Entries to its
//! left were written by the client and prove nothing. An entry that does not
//! parse (not an address, or bytes that are not text) ends the walk at the
//! last address that was verified; it never spoils the entries to its right.
//! From an untrusted peer the header is ignored entirely.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::{IpNet, Ipv6Net};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    ipv6_prefix_len: u8,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>, ipv6_prefix_len: u8) -> Self {
        Self {
            trusted,
            ipv6_prefix_len,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address; `None` only when the connection has no IP peer.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.is_trusted(client) {
            return Some(client);
        }
        // Split as bytes: a byte that is not visible ASCII (which the client
        // may write to the left of what the proxies append) spoils only its
        // own entry, never the verified ones to its right.
        let entries: Vec<&[u8]> = headers
            .get_all(X_FORWARDED_FOR)
            .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
            .collect();
        for entry in entries.iter().rev() {
            let entry = std::str::from_utf8(entry).ok().map(str::trim);
            match entry.and_then(parse_forwarded) {
                Some(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        Some(client)
    }

    /// The identity limits count by: the address, or for IPv6 its prefix.
    pub fn key(&self, ip: Option<IpAddr>) -> String {
        match ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => Ipv6Net::new(v6, self.ipv6_prefix_len)
                .map(|net| net.trunc().to_string())
                .unwrap_or_else(|_| v6.to_string()),
            None => "unknown".to_owned(),
        }
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn resolver() -> ClientIpResolver {
        ClientIpResolver::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            64,
        )
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                HeaderName::from_static(X_FORWARDED_FOR),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let got = resolver().resolve(ip("198.51.100.9"), &headers(&["203.0.113.1"]));
        assert_eq!(got, ip("198.51.100.9"));
        let got = resolver().resolve(ip("198.51.100.9"), &headers(&["garbage"]));
        assert_eq!(got, ip("198.51.100.9"));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let got = resolver().resolve(
            ip("10.0.0.2"),
            &headers(&["1.1.1.1, 203.0.113.7, 10.0.0.5"]),
        );
        assert_eq!(got, ip("203.0.113.7"));
        // Several header lines are one list, in order.
        let got = resolver().resolve(ip("10.0.0.2"), &headers(&["1.1.1.1", "203.0.113.8"]));
        assert_eq!(got, ip("203.0.113.8"));
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        let got = resolver().resolve(ip("10.0.0.2"), &headers(&["203.0.113.7:4711"]));
        assert_eq!(got, ip("203.0.113.7"));
        let got = resolver().resolve(ip("10.0.0.2"), &headers(&["[2001:db8::1]:80"]));
        assert_eq!(got, ip("2001:db8::1"));
    }

    #[test]
    fn a_malformed_entry_stops_at_the_last_verified_hop() {
        let got = resolver().resolve(ip("10.0.0.2"), &headers(&["203.0.113.7, nonsense"]));
        assert_eq!(got, ip("10.0.0.2"));
        let got = resolver().resolve(
            ip("10.0.0.2"),
            &headers(&["nonsense, 203.0.113.7, 10.0.0.9"]),
        );
        assert_eq!(got, ip("203.0.113.7"));
        let got = resolver().resolve(ip("10.0.0.2"), &headers(&["nonsense, 10.0.0.9"]));
        assert_eq!(got, ip("10.0.0.9"));
    }

    #[test]
    fn a_non_ascii_byte_left_of_the_client_does_not_make_the_proxy_the_client() {
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static(X_FORWARDED_FOR),
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7, 10.0.0.5").unwrap(),
        );
        assert_eq!(resolver().resolve(ip("10.0.0.2"), &map), ip("203.0.113.7"));
        // On a header line of its own, too.
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static(X_FORWARDED_FOR),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        map.append(
            HeaderName::from_static(X_FORWARDED_FOR),
            HeaderValue::from_static("203.0.113.8"),
        );
        assert_eq!(resolver().resolve(ip("10.0.0.2"), &map), ip("203.0.113.8"));
        // A malformed entry right of every address still ends at the proxy.
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static(X_FORWARDED_FOR),
            HeaderValue::from_bytes(b"203.0.113.7, \xff").unwrap(),
        );
        assert_eq!(resolver().resolve(ip("10.0.0.2"), &map), ip("10.0.0.2"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(
            resolver().resolve(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let r = resolver();
        assert_eq!(r.key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            r.key(ip("::ffff:192.0.2.1").map(|ip| ip.to_canonical())),
            "192.0.2.1"
        );
        assert_eq!(r.key(None), "unknown");
    }
}
