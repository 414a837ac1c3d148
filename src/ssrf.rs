//! Which addresses the service may connect to on a tenant's behalf (webhook
//! receivers): public ones only, so a tenant cannot make the service call
//! its own network (SSRF).
//!
//! Refused: loopback, private, link-local (cloud metadata lives at
//! 169.254.169.254), carrier-grade NAT, benchmarking, documentation,
//! multicast, reserved and unspecified IPv4; the IETF protocol block
//! 192.0.0.0/24; IPv6 loopback, unique-local, link-local and the deprecated
//! site-local fec0::/10, documentation, multicast; and the IPv6 forms that
//! carry an IPv4 address — IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16` — whenever the IPv4
//! address inside is not public, plus local-use NAT64 `64:ff9b:1::/48` and
//! Teredo `2001::/32`, whose embedded address cannot be trusted.
//!
//! The check and the connection use the same answer: [`CheckedResolver`]
//! is the HTTP client's DNS resolver, so the addresses it hands over are
//! exactly the ones it checked — no second lookup a rebinding DNS server
//! could answer differently. TLS still verifies the URL's host name.

use std::error::Error;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest wait for a host's addresses.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether an address is reachable on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        // Carrier-grade NAT (100.64.0.0/10) and benchmarking (198.18.0.0/15).
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        // IETF protocol assignments (192.0.0.0/24).
        || (a == 192 && b == 0 && c == 0)
        // Reserved (240.0.0.0/4).
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    // The IPv4 address in the last 32 bits.
    let low_v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated), excluding :: and ::1.
    if s[..6] == [0; 6] {
        return !v6.is_unspecified() && !v6.is_loopback() && is_public_v4(low_v4());
    }
    // NAT64 well-known prefix (64:ff9b::/96).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(low_v4());
    }
    // 6to4 (2002::/16): the IPv4 address follows the prefix.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    !(v6.is_unspecified()
        || v6.is_multicast()
        // Local-use NAT64 (64:ff9b:1::/48).
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        // Teredo (2001::/32).
        || (s[0] == 0x2001 && s[1] == 0)
        // Documentation (2001:db8::/32).
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10).
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0)
}

/// Why a host is refused; safe to show to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host resolves to a private, loopback, link-local or otherwise non-public address")]
    NonPublic,
}

type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks a host name up: the system's resolver in the service, a scripted
/// one in tests.
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// The system's resolver (getaddrinfo, off the async threads).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|addr| addr.ip())
                .collect())
        })
    })
}

/// The addresses of `host`, if every one is public (or `allow_private`).
pub async fn resolve_public(
    lookup: &Lookup,
    host: &str,
    allow_private: bool,
) -> Result<Vec<IpAddr>, HostError> {
    let addresses = tokio::time::timeout(DNS_TIMEOUT, lookup(host.to_owned()))
        .await
        .map_err(|_| HostError::Unresolvable)?
        .map_err(|_| HostError::Unresolvable)?;
    if addresses.is_empty() {
        return Err(HostError::Unresolvable);
    }
    if !allow_private && !addresses.iter().copied().all(is_public) {
        return Err(HostError::NonPublic);
    }
    Ok(addresses)
}

/// The HTTP client's resolver: hands over only addresses it checked.
pub struct CheckedResolver {
    lookup: Lookup,
    allow_private: bool,
}

impl CheckedResolver {
    pub fn new(lookup: Lookup, allow_private: bool) -> Self {
        Self {
            lookup,
            allow_private,
        }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = resolve_public(&lookup, name.as_str(), allow_private)
                .await
                .map_err(|err| Box::new(err) as Box<dyn Error + Send + Sync>)?;
            // The client sets the URL's port on each.
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The client for requests to tenant-chosen URLs: connects only to what
/// [`CheckedResolver`] checked, follows no redirect (a redirect could point
/// anywhere), gives up connecting after `connect_timeout`.
pub fn client(
    lookup: Lookup,
    allow_private: bool,
    connect_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(CheckedResolver::new(lookup, allow_private)))
        .build()
}

/// The [`HostError`] behind a failed request, if the resolver refused.
pub fn refusal(err: &reqwest::Error) -> Option<HostError> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<HostError>() {
            return Some(*refused);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A DNS server that rebinds: a public address first, then loopback.
    fn rebinding_lookup() -> Lookup {
        let calls = Arc::new(AtomicUsize::new(0));
        Arc::new(move |_host: String| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                let ip: IpAddr = if first { "93.184.216.34" } else { "127.0.0.1" }
                    .parse()
                    .unwrap();
                Ok(vec![ip])
            })
        })
    }

    #[tokio::test]
    async fn a_host_that_rebinds_after_the_check_is_refused_at_connection() {
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = receiver.local_addr().unwrap().port();
        let lookup = rebinding_lookup();
        // The check (when the subscription was saved) saw a public address.
        let checked = resolve_public(&lookup, "hooks.rebind.test", false).await;
        assert_eq!(checked, Ok(vec!["93.184.216.34".parse().unwrap()]));
        // The delivery's own resolution now says loopback: refused, never sent.
        let client = client(lookup, false, Duration::from_secs(2)).unwrap();
        let err = client
            .post(format!("http://hooks.rebind.test:{port}/hooks"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&err), Some(HostError::NonPublic), "{err:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), receiver.accept()).await;
        assert!(accepted.is_err(), "the receiver was reached");

        // Where private networks are allowed (development), the same client
        // connects, so the refusal above is the resolver's doing.
        let loopback: Lookup =
            Arc::new(|_| Box::pin(async { Ok(vec![IpAddr::from([127, 0, 0, 1])]) }));
        let open = client_with(loopback, true);
        let sent = tokio::spawn(async move {
            open.post(format!("http://hooks.rebind.test:{port}/hooks"))
                .timeout(Duration::from_millis(500))
                .send()
                .await
        });
        let accepted = tokio::time::timeout(Duration::from_secs(2), receiver.accept()).await;
        assert!(accepted.is_ok(), "the receiver was not reached");
        sent.abort();
    }

    fn client_with(lookup: Lookup, allow_private: bool) -> reqwest::Client {
        client(lookup, allow_private, Duration::from_secs(2)).unwrap()
    }

    #[test]
    fn private_special_and_embedded_private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // IPv4-compatible, NAT64 and 6to4 forms of private addresses.
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "64:ff9b:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
