//! Sign-in rate limiting, per (user name, client address) and per client address, in memory.
//!
//! Failures are counted for the pair of the name and the address they came from, and for the
//! address alone (with a higher limit, for offices behind one address). There is deliberately
//! no limit per user name alone: whoever can reach the sign-in form could then lock a user
//! (`admin`) out for everyone by typing wrong passwords. A guesser is bounded per address
//! instead; guessing from many addresses is left to the password's strength (at least 8
//! characters, argon2id), which an attacker with that many addresses must beat anyway.
//!
//! Without a client address (none known), the name is limited on its own, as before.
//!
//! The counters live in this process only: they are lost on restart and not shared between
//! several servers on one database. That bounds guessing per window per name and address for
//! each process, which is what it is for.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use types::Millis;

/// Above this many keys, keys whose failures all left the window are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user name from an address (`None`: unknown address).
    UserAt(String, Option<IpAddr>),
    /// An address, whatever the names.
    Addr(IpAddr),
}

/// A client address as counted: IPv4 as is, IPv6 by its /64 network (one host usually has a
/// whole /64 to pick addresses from), IPv4-mapped IPv6 as the IPv4 address.
pub fn addr_net(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Failed sign-in attempts in a sliding window.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    /// Per (name, address).
    max_failures: usize,
    /// Per address.
    max_failures_per_address: usize,
    window_ms: Millis,
    failures: Mutex<HashMap<Key, VecDeque<Millis>>>,
}

/// An attempt that passed the limiter. It is counted as a failure from the start (so that
/// many concurrent guesses cannot all slip in before the first one fails); [`Attempt::succeeded`]
/// takes it back.
#[derive(Debug)]
pub(crate) struct Attempt {
    keys: Vec<Key>,
    at: Millis,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, max_failures_per_address: u32, window_ms: Millis) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1) as usize,
            max_failures_per_address: max_failures_per_address.max(1) as usize,
            window_ms: window_ms.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, VecDeque<Millis>>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep going.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses with `RateLimited` when `user` from `addr` has `max_failures` failures, or
    /// `addr` has `max_failures_per_address`, in the window ending `now`; otherwise records
    /// this attempt as a failure of both and returns it.
    pub fn begin(&self, user: &str, addr: Option<IpAddr>, now: Millis) -> Result<Attempt> {
        let addr = addr.map(addr_net);
        let mut keys = vec![Key::UserAt(user.to_owned(), addr)];
        keys.extend(addr.map(Key::Addr));
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            let window_start = now - self.window_ms;
            map.retain(|_, times| times.back().is_some_and(|&t| t > window_start));
        }
        let mut wait_ms: Millis = 0;
        for key in &keys {
            if let Some(times) = map.get_mut(key) {
                while times.front().is_some_and(|&t| t <= now - self.window_ms) {
                    times.pop_front();
                }
                let max = match key {
                    Key::UserAt(..) => self.max_failures,
                    Key::Addr(_) => self.max_failures_per_address,
                };
                if times.len() >= max {
                    // Allowed again when the oldest failure in the window leaves it.
                    let oldest = times.front().copied().unwrap_or(now);
                    wait_ms = wait_ms.max(oldest + self.window_ms - now);
                }
            }
        }
        if wait_ms > 0 {
            let retry_after_secs = u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1);
            return Err(Error::RateLimited { retry_after_secs });
        }
        for key in &keys {
            map.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Attempt { keys, at: now })
    }

    /// The attempt's credentials were right: the user's failures from that address are
    /// forgotten and this attempt no longer counts against the address (its earlier failures
    /// still do).
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.lock();
        for key in attempt.keys {
            match key {
                Key::UserAt(..) => {
                    map.remove(&key);
                }
                Key::Addr(_) => {
                    if let Some(times) = map.get_mut(&key) {
                        if let Some(i) = times.iter().rposition(|&t| t == attempt.at) {
                            times.remove(i);
                        }
                        if times.is_empty() {
                            map.remove(&key);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn limited(r: Result<Attempt>) -> u64 {
        match r {
            Err(Error::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[test]
    fn sliding_window_per_user() {
        let l = LoginLimiter::new(3, 100, 15 * MIN);
        for i in 0..3 {
            l.begin("alice", None, i * MIN).unwrap();
        }
        assert_eq!(limited(l.begin("alice", None, 3 * MIN)), 12 * 60);
        l.begin("bob", None, 3 * MIN).unwrap();
        // The first failure leaves the window at 15 min; one more attempt is allowed then.
        assert_eq!(limited(l.begin("alice", None, 15 * MIN - 1)), 1);
        l.begin("alice", None, 15 * MIN).unwrap();
        limited(l.begin("alice", None, 15 * MIN + 1));
    }

    #[test]
    fn success_forgets_the_user_but_not_the_address() {
        let l = LoginLimiter::new(2, 2, MIN);
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        l.begin("alice", Some(addr), 0).unwrap();
        let ok = l.begin("alice", Some(addr), 1).unwrap();
        l.succeeded(ok);
        // alice is forgotten; the address still has one failure (at 0).
        l.begin("carol", Some(addr), 2).unwrap();
        limited(l.begin("dave", Some(addr), 3));
        l.begin("alice", None, 3).unwrap();
    }

    #[test]
    fn one_address_cannot_lock_a_user_out_of_other_addresses() {
        let l = LoginLimiter::new(5, 20, 15 * MIN);
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let office: IpAddr = "198.51.100.7".parse().unwrap();
        for i in 0..5 {
            l.begin("admin", Some(attacker), i).unwrap();
        }
        // The attacker's address is limited for admin...
        limited(l.begin("admin", Some(attacker), 10));
        // ...but admin from elsewhere is not, even with a few typos of their own.
        for i in 0..4 {
            l.begin("admin", Some(office), 20 + i).unwrap();
        }
        let ok = l.begin("admin", Some(office), 30).unwrap();
        l.succeeded(ok);
        // Other names from the attacker's address: up to the per-address limit (20 in all).
        for i in 0..15 {
            l.begin(&format!("user{}", i / 5), Some(attacker), 40 + i)
                .unwrap();
        }
        limited(l.begin("someone-else", Some(attacker), 60));
        // The office's own failures are its own: admin's success there forgot them.
        l.begin("admin", Some(office), 61).unwrap();
    }

    #[test]
    fn without_an_address_the_name_is_limited_alone() {
        let l = LoginLimiter::new(2, 20, MIN);
        l.begin("alice", None, 0).unwrap();
        l.begin("alice", None, 1).unwrap();
        limited(l.begin("alice", None, 2));
        l.begin("alice", Some("10.0.0.1".parse().unwrap()), 2)
            .unwrap();
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_net(a), addr_net(b));
        assert_ne!(addr_net(a), addr_net(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_net(mapped), addr_net("10.0.0.1".parse().unwrap()));
    }
}
