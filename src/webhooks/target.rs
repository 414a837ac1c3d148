//! Where a webhook may point. In production only `https` URLs, on an
//! allowed port (`webhooks.allowed_ports`, 443 and 8443 by default), whose
//! host is a public address or resolves only to public addresses (see
//! [`crate::ssrf`]: a tenant must not make the service call its own
//! network). Checked when a subscription is saved, with a clear 422; at
//! delivery the form is checked again and the host is resolved and checked
//! by the delivery client's own resolver, so the request goes to exactly the
//! addresses that passed. `webhooks.allow_http` and
//! `webhooks.allow_private_networks` relax this for development and tests,
//! as an empty `allowed_ports` does; production refuses to start with any.

use std::net::IpAddr;

use url::{Host, Url};

use crate::config::WebhookSettings;
use crate::ssrf::{self, HostError, Lookup};

/// Why a URL is refused; safe to show to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an absolute http(s) URL")]
    NotHttp,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry credentials (user:password@)")]
    Credentials,
    #[error("must use one of the ports {0}")]
    Port(String),
    #[error("{0}")]
    Host(#[from] HostError),
}

/// Checks the URL without the network: scheme, credentials, port, and an
/// address written in the URL itself.
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
    let allowed = &settings.allowed_ports;
    if !allowed.is_empty()
        && !parsed
            .port_or_known_default()
            .is_some_and(|port| allowed.contains(&port))
    {
        let ports: Vec<String> = allowed.iter().map(u16::to_string).collect();
        return Err(TargetError::Port(ports.join(", ")));
    }
    let literal = match parsed.host() {
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(ip) = literal
        && !settings.allow_private_networks
        && !ssrf::is_public(ip)
    {
        return Err(HostError::NonPublic.into());
    }
    Ok(parsed)
}

/// Checks the URL's form and that every address its host resolves to is
/// public (when a subscription is saved: the tenant hears why at once).
pub async fn check(
    url: &str,
    settings: &WebhookSettings,
    lookup: &Lookup,
) -> Result<Url, TargetError> {
    let parsed = check_form(url, settings)?;
    if let Some(Host::Domain(domain)) = parsed.host() {
        ssrf::resolve_public(lookup, domain, settings.allow_private_networks).await?;
    }
    Ok(parsed)
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

    #[tokio::test]
    async fn production_rules_refuse_http_credentials_other_ports_and_internal_hosts() {
        let s = strict();
        let lookup = ssrf::system_lookup();
        let check = |url: &'static str| {
            let (s, lookup) = (s.clone(), lookup.clone());
            async move { check(url, &s, &lookup).await }
        };
        assert_eq!(
            check("http://example.com/h").await,
            Err(TargetError::NotHttps)
        );
        assert_eq!(
            check("ftp://example.com/h").await,
            Err(TargetError::NotHttp)
        );
        assert_eq!(
            check("https://u:p@example.com/h").await,
            Err(TargetError::Credentials)
        );
        for url in ["https://93.184.216.34:22/h", "https://93.184.216.34:8080/h"] {
            assert_eq!(
                check(url).await,
                Err(TargetError::Port("443, 8443".into())),
                "{url}"
            );
        }
        assert!(check("https://93.184.216.34:8443/h").await.is_ok());
        assert!(check("https://93.184.216.34/h").await.is_ok());
        for url in [
            "https://127.0.0.1/h",
            "https://[::1]/h",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5:8443/h",
            "https://[64:ff9b::a9fe:a9fe]/h",
            "https://[2002:a00:1::]/h",
            "https://[::127.0.0.1]/h",
            "https://[fec0::1]/h",
            "https://192.0.0.8/h",
            "https://localhost/h",
        ] {
            assert_eq!(
                check(url).await,
                Err(TargetError::Host(HostError::NonPublic)),
                "{url}"
            );
        }
        let relaxed = WebhookSettings {
            allow_http: true,
            allow_private_networks: true,
            allowed_ports: vec![],
            ..strict()
        };
        assert!(
            super::check("http://127.0.0.1:9/h", &relaxed, &lookup)
                .await
                .is_ok()
        );
    }
}
