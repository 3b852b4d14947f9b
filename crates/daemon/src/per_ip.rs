//! Connections per client address, refused beyond a limit (smtpd, imapd).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How many connections each client address holds now.
#[derive(Debug, Default)]
pub struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a new connection from `ip`; false (and nothing counted) when `ip` already holds
    /// `max` (at least 1).
    pub fn enter(&self, ip: IpAddr, max: usize) -> bool {
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
}
