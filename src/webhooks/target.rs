//! Where a webhook may point. In production only `https` URLs whose host
//! resolves to public addresses: never loopback, private, link-local (cloud
//! metadata lives at 169.254.169.254), carrier-grade NAT, multicast or
//! unspecified ones — a tenant must not make the service call its own
//! network (SSRF). Checked when a subscription is saved and again before
//! every delivery (DNS may change in between). `webhooks.allow_http` and
//! `webhooks.allow_private_networks` relax this for development and tests;
//! production refuses to start with either.

use std::net::IpAddr;

use url::Url;

use crate::config::WebhookSettings;

/// Longest wait for the host's addresses.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a URL is refused; safe to show to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an absolute http(s) URL")]
    NotHttp,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry credentials (user:password@)")]
    Credentials,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host resolves to a private, loopback, link-local or otherwise non-public address")]
    NonPublic,
}

/// Whether an address is reachable on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
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
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7) and link-local (fe80::/10).
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // Documentation (2001:db8::/32).
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Checks the URL's form (no network).
pub fn check_form(url: &str, settings: &WebhookSettings) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    match parsed.scheme() {
        "https" => {}
        "http" if settings.allow_http => {}
        "http" => return Err(TargetError::NotHttps),
        _ => return Err(TargetError::NotHttp),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NotHttp);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(parsed)
}

/// Checks the URL's form and that every address its host resolves to is public.
pub async fn check(url: &str, settings: &WebhookSettings) -> Result<Url, TargetError> {
    let parsed = check_form(url, settings)?;
    if settings.allow_private_networks {
        return Ok(parsed);
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A resolver that does not answer must not hold the request.
        Err(_) => tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| TargetError::Unresolvable)?
            .map_err(|_| TargetError::Unresolvable)?
            .map(|addr| addr.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    if addresses.into_iter().all(is_public) {
        Ok(parsed)
    } else {
        Err(TargetError::NonPublic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> WebhookSettings {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let settings: crate::config::Settings =
            Figment::from(Toml::string(crate::config::DEFAULT_CONFIG))
                .extract()
                .expect("default config parses");
        settings.webhooks
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn production_rules_refuse_http_credentials_and_internal_hosts() {
        let s = strict();
        assert_eq!(
            check("http://example.com/h", &s).await,
            Err(TargetError::NotHttps)
        );
        assert_eq!(
            check("ftp://example.com/h", &s).await,
            Err(TargetError::NotHttp)
        );
        assert_eq!(
            check("https://u:p@example.com/h", &s).await,
            Err(TargetError::Credentials)
        );
        for url in [
            "https://127.0.0.1/h",
            "https://[::1]/h",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5:8443/h",
            "https://localhost/h",
        ] {
            assert_eq!(check(url, &s).await, Err(TargetError::NonPublic), "{url}");
        }
        let relaxed = WebhookSettings {
            allow_http: true,
            allow_private_networks: true,
            ..strict()
        };
        assert!(check("http://127.0.0.1:9/h", &relaxed).await.is_ok());
    }
}
