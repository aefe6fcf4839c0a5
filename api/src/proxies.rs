//! Trusted reverse proxies (`BONSAI__HTTP__TRUSTED_PROXIES`): behind Nginx every connection comes from the
//! proxy, so the client's address (per-address login lockout, a session's address, the per-address connection
//! cap) is read from `X-Forwarded-For`, but only when the connection comes from a proxy the operator named:
//! anyone else could write any address there. The client is the rightmost address of the header that is not a
//! trusted proxy (each proxy appends the address it heard from), as Nginx's `real_ip_recursive` does.

use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// The proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Comma-separated addresses or CIDR blocks (`10.0.0.0/8, 127.0.0.1`); empty: none.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => item
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("not an address or CIDR block: {item:?}"))?,
            };
            nets.push(net);
        }
        Ok(Self(Arc::new(nets)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address of a connection from `peer` carrying `forwarded_for` (the `X-Forwarded-For`
    /// values, in order): `peer` itself unless it is trusted; otherwise the rightmost forwarded address that is
    /// not trusted (the leftmost when all are; `peer` when the header is missing or unreadable).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Option<Vec<IpAddr>> = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect();
        let Some(hops) = hops.filter(|h| !h.is_empty()) else { return peer };
        hops.iter().rev().find(|ip| !self.trusts(**ip)).or(hops.first()).copied().unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_and_only_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        // Not from a proxy: the header is anyone's to write, and ignored.
        assert_eq!(proxies.client(ip("198.51.100.9"), &["203.0.113.7"]), ip("198.51.100.9"));
        // From a proxy: the address it heard from.
        assert_eq!(proxies.client(ip("127.0.0.1"), &["203.0.113.7"]), ip("203.0.113.7"));
        // A client that wrote its own header gets its real address, the one the proxy appended.
        assert_eq!(proxies.client(ip("127.0.0.1"), &["1.2.3.4, 203.0.113.7"]), ip("203.0.113.7"));
        // Through two proxies; and over two header lines.
        assert_eq!(proxies.client(ip("10.1.2.3"), &["203.0.113.7", "10.9.9.9"]), ip("203.0.113.7"));
        // Missing or unreadable: the proxy.
        assert_eq!(proxies.client(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        assert_eq!(proxies.client(ip("127.0.0.1"), &["junk"]), ip("127.0.0.1"));
        // IPv4 mapped into IPv6 is the same address.
        assert!(proxies.trusts(ip("::ffff:127.0.0.1")));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
