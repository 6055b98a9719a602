//! Where a webhook may go. A tenant names the URL, so an endpoint is a request the platform
//! makes on a stranger's behalf from inside its network: only `http(s)`, no credentials in
//! the URL, and never a loopback, private, link-local, shared or reserved address (cloud
//! metadata at 169.254.169.254, the database next door) unless the deployment allows it
//! (`WEBHOOK_ALLOW_PRIVATE_TARGETS`). A literal address is checked when the endpoint is
//! saved; a host name is checked again at each delivery by [`PublicResolver`], which is
//! what the HTTP client connects through, so a name that later resolves inward (DNS
//! rebinding) still reaches nothing. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use url::Host;

pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("is not an absolute URL")]
    NotUrl,
    #[error("must be at most {MAX_URL_LEN} characters, without spaces or control characters")]
    Shape,
    #[error("must use http or https")]
    Scheme,
    #[error("must not hold a user name or password (the signature authenticates deliveries)")]
    Credentials,
    #[error("must not point at a loopback, private, link-local or reserved address")]
    NotPublic,
}

/// A checked endpoint URL (its fragment dropped: it never reaches a server).
pub fn parse(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    if raw.is_empty() || raw.len() > MAX_URL_LEN || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(TargetError::Shape);
    }
    let mut url = Url::parse(raw).map_err(|_| TargetError::NotUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    url.set_fragment(None);
    if !allow_private {
        match url.host() {
            None => return Err(TargetError::NotUrl),
            Some(Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => return Err(TargetError::NotPublic),
            Some(Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => return Err(TargetError::NotPublic),
            Some(Host::Domain(name)) if local_name(name) => return Err(TargetError::NotPublic),
            _ => {}
        }
    }
    Ok(url)
}

/// Names that resolve to this machine or its link without asking DNS.
fn local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local") || !name.contains('.')
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this" network
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are as public as it is.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64
        return public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        // 6to4
        return public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0; 6]                  // IPv4-compatible (deprecated) and the rest of ::/96
        || (s[0] & 0xfe00) == 0xfc00          // unique local
        || (s[0] & 0xffc0) == 0xfe80          // link-local
        || (s[0] & 0xffc0) == 0xfec0          // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00          // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200)  // Teredo, benchmarking, ORCHID and other IETF blocks
        || s[0] == 0x0100) // discard-only
}

/// The HTTP client's resolver for deliveries: the system's answer without the addresses
/// [`is_public`] refuses (all of them kept when private targets are allowed); a name left
/// with none fails the attempt.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    pub allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the host resolves to no public address")]
pub struct NoPublicAddress;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.into_iter().filter(|a| allow_private || is_public(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(NoPublicAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_public() {
        for bad in [
            "http://127.0.0.1/hook",
            "http://127.1/hook",
            "http://2130706433/hook",
            "http://0x7f000001/hook",
            "http://0.0.0.0:8080/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::]/",
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://printer.local/",
            "http://intranet/",
            "http://224.0.0.1/",
        ] {
            assert_eq!(parse(bad, false), Err(TargetError::NotPublic), "{bad}");
        }
        assert_eq!(parse("ftp://example.com/", false), Err(TargetError::Scheme));
        assert_eq!(parse("file:///etc/passwd", false), Err(TargetError::Scheme));
        assert_eq!(parse("https://user:pw@example.com/", false), Err(TargetError::Credentials));
        assert_eq!(parse("https://example.com/a\r\nHost: x", false), Err(TargetError::Shape));
        assert_eq!(parse("https://example.com/\0", false), Err(TargetError::Shape));
        assert_eq!(parse("/relative", false), Err(TargetError::NotUrl));
        assert_eq!(parse(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)), false), Err(TargetError::Shape));
    }

    #[test]
    fn keeps_public_targets_and_private_ones_when_allowed() {
        assert_eq!(parse("https://hooks.example.com/in#frag", false).unwrap().as_str(), "https://hooks.example.com/in");
        assert!(parse("http://93.184.215.14:8080/x", false).is_ok());
        assert!(parse("http://[2606:4700::1111]/", false).is_ok());
        assert!(parse("http://127.0.0.1:9000/", true).is_ok());
        assert!(parse("http://localhost:9000/", true).is_ok());
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(!is_public("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_resolver_drops_inward_addresses() {
        use reqwest::dns::Resolve;
        let name = || -> reqwest::dns::Name { "localhost".parse().unwrap() };
        assert!(PublicResolver { allow_private: false }.resolve(name()).await.is_err());
        let kept: Vec<SocketAddr> = PublicResolver { allow_private: true }.resolve(name()).await.unwrap().collect();
        assert!(kept.iter().all(|a| a.ip().is_loopback()) && !kept.is_empty());
    }
}
