//! Sign-in rate limiting, per user name and per client address, in memory.
//!
//! The counters live in this process only: they are lost on restart and not shared between
//! several servers on one database. That bounds guessing to `max_failures` per window per
//! name and per address for each process, which is what it is for.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::model::Millis;

/// Above this many keys, keys whose failures all left the window are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 network (one host usually has a
/// whole /64 to pick addresses from), IPv4-mapped IPv6 as the IPv4 address.
fn addr_key(addr: IpAddr) -> Key {
    match addr {
        IpAddr::V4(v4) => Key::Addr(IpAddr::V4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Addr(IpAddr::V4(v4)),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                Key::Addr(IpAddr::V6(segments.into()))
            }
        },
    }
}

/// Failed sign-in attempts in a sliding window.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    max_failures: usize,
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
    pub fn new(max_failures: u32, window_ms: Millis) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1) as usize,
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

    /// Refuses with `RateLimited` when `user` or `addr` has `max_failures` failures in the
    /// window ending `now`; otherwise records this attempt as a failure of both and returns it.
    pub fn begin(&self, user: &str, addr: Option<IpAddr>, now: Millis) -> Result<Attempt> {
        let mut keys = vec![Key::User(user.to_owned())];
        keys.extend(addr.map(addr_key));
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
                if times.len() >= self.max_failures {
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

    /// The attempt's credentials were right: the user's failures are forgotten and this attempt
    /// no longer counts against the address (its earlier failures still do).
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.lock();
        for key in attempt.keys {
            match key {
                Key::User(_) => {
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
        let l = LoginLimiter::new(3, 15 * MIN);
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
        let l = LoginLimiter::new(2, MIN);
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
    fn ipv6_is_keyed_by_its_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_key(mapped), addr_key("10.0.0.1".parse().unwrap()));
    }
}
