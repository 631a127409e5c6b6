//! Where a request to a URL that someone else chose may go (a webhook's target, the SMP an SML
//! record names): `https`, or plain `http` on loopback; never to private, link-local, shared or
//! cloud-metadata addresses unless the operator's `allow` list names the host or IP (SSRF).
//! The check runs on every resolution (a [`reqwest::dns::Resolve`]), so a name that later
//! resolves elsewhere (DNS rebinding) is refused too.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why an address is not a fit target, if it is not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("the cloud metadata service")
    } else if ip.is_loopback() {
        None
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        Some("not a unicast host address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip == "fd00:ec2::254".parse::<Ipv6Addr>().expect("valid") {
        Some("the cloud metadata service")
    } else if ip.is_loopback() {
        None
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast host address")
    } else {
        None
    }
}

/// The operator's exceptions.
#[derive(Debug, Clone)]
pub struct Allow {
    entries: Arc<Vec<String>>,
    /// Whether loopback is a target without being named (a webhook on this host: yes; an
    /// address someone else's DNS record gave: no).
    loopback: bool,
}

impl Default for Allow {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Allow {
    /// Hosts and IPs named in `allow`; loopback is allowed.
    pub fn new(entries: Vec<String>) -> Self {
        Self {
            entries: Arc::new(
                entries
                    .into_iter()
                    .map(|e| e.to_ascii_lowercase())
                    .collect(),
            ),
            loopback: true,
        }
    }

    /// The same exceptions, with loopback refused unless named: for URLs a third party chose
    /// (an SMP address from a DNS record), which must not reach services on this host.
    pub fn without_loopback(mut self) -> Self {
        self.loopback = false;
        self
    }

    fn names(&self, host: &str, ip: Option<IpAddr>) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.entries
            .iter()
            .any(|entry| *entry == host || ip.is_some_and(|ip| *entry == ip.to_string()))
    }

    /// Checks a resolved address of `host`.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let loopback = match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        if loopback && !self.loopback && !self.names(host, Some(ip)) {
            return Err(format!(
                "refused target `{host}`: it resolves to {ip}, this host's loopback; name it in `allow` if it is really yours"
            ));
        }
        match forbidden(ip) {
            Some(why) if !self.names(host, Some(ip)) => Err(format!(
                "refused target `{host}`: it resolves to {ip}, {why}; name it in `allow` if it is really yours"
            )),
            _ => Ok(()),
        }
    }
}

/// Checks the URL's scheme and, for IP literals, the address.
pub fn check_url(url: &Url, allow: &Allow) -> Result<(), String> {
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{url}` has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{url}`: plain http is refused except on loopback; use https"
            ));
        }
        other => return Err(format!("`{url}`: scheme `{other}` is not http(s)")),
    }
    let host = url.host_str().unwrap_or_default();
    match url.host() {
        Some(Host::Ipv4(ip)) => allow.check(host, IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => allow.check(host, IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// Resolves names and refuses forbidden addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Allow);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                allow.check(&host, addr.ip())?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Resolves `url`'s host now and checks every address, for a clear, permanent error before any
/// request is made.
pub async fn check_resolved(url: &Url, allow: &Allow) -> Result<(), String> {
    let Some(Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
    for addr in addrs {
        allow.check(host, addr.ip())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_link_local_and_metadata_are_refused_loopback_is_not() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.10.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
        ] {
            assert!(forbidden(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in ["127.0.0.1", "::1", "93.184.216.34", "2606:4700::1111"] {
            assert!(forbidden(ip.parse().expect("ip")).is_none(), "{ip}");
        }
    }

    #[test]
    fn urls_need_https_except_on_loopback_and_the_allow_list_opens_private_hosts() {
        let none = Allow::default();
        let url = |s: &str| Url::parse(s).expect("url");
        assert!(check_url(&url("https://platform.example/hooks"), &none).is_ok());
        assert!(check_url(&url("http://127.0.0.1:8080/hooks"), &none).is_ok());
        assert!(
            check_url(&url("http://platform.example/hooks"), &none)
                .unwrap_err()
                .contains("plain http")
        );
        assert!(
            check_url(&url("https://10.0.0.5/hooks"), &none)
                .unwrap_err()
                .contains("private")
        );
        assert!(
            check_url(&url("https://169.254.169.254/latest"), &none)
                .unwrap_err()
                .contains("metadata")
        );
        assert!(
            check_url(
                &url("https://10.0.0.5/hooks"),
                &Allow::new(vec!["10.0.0.5".into()])
            )
            .is_ok()
        );
    }
}
