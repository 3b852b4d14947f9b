//! Connections per client address, refused beyond a limit (smtpd, imapd), and the key
//! every per-client limit uses: [`client_key`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The address per-client limits (connections, rates, lockouts) count against: an IPv4
/// address as it is (also when it arrives IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 address
/// by its /64. One IPv6 host is routinely given a whole /64, so counting single IPv6
/// addresses would let it open 2^64 times the limit.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// [`client_key`] as text for logs and lockout records: `192.0.2.1`, `2001:db8:1:2::/64`.
pub fn client_key_text(ip: IpAddr) -> String {
    match client_key(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// How many connections each client address holds now (clones share the counts).
#[derive(Debug, Default, Clone)]
pub struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a new connection from `ip`; false (and nothing counted) when `ip` (its
    /// [`client_key`]: an IPv6 client's whole /64) already holds `max` (at least 1).
    pub fn enter(&self, ip: IpAddr, max: usize) -> bool {
        let ip = client_key(ip);
        let Ok(mut m) = self.counts.lock() else {
            return true;
        };
        let n = m.entry(ip).or_insert(0);
        if *n >= max.max(1) {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` (counted by [`PerIp::enter`]) has ended.
    pub fn leave(&self, ip: IpAddr) {
        let ip = client_key(ip);
        if let Ok(mut m) = self.counts.lock()
            && let Some(n) = m.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_per_address_and_release() {
        let t = PerIp::new();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        assert!(t.enter(a, 2));
        assert!(t.enter(a, 2));
        assert!(!t.enter(a, 2));
        assert!(t.enter(b, 2));
        t.leave(a);
        assert!(t.enter(a, 2));
        t.leave(a);
        t.leave(a);
        t.leave(a);
        assert!(t.counts.lock().unwrap().get(&a).is_none());
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let t = PerIp::new();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.enter(a, 2));
        assert!(t.enter(b, 2));
        // A third address of the same /64 is the same client.
        assert!(!t.enter("2001:db8:1:2::99".parse().unwrap(), 2));
        assert!(t.enter(other, 2));
        t.leave(b);
        assert!(t.enter("2001:db8:1:2::abcd".parse().unwrap(), 2));
        // IPv4-mapped addresses are the IPv4 client.
        let v4: IpAddr = [192, 0, 2, 7].into();
        assert!(t.enter(v4, 1));
        assert!(!t.enter("::ffff:192.0.2.7".parse().unwrap(), 1));
        assert_eq!(client_key_text(a), "2001:db8:1:2::/64");
        assert_eq!(
            client_key_text("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
        assert_eq!(client_key_text(v4), "192.0.2.7");
    }
}
