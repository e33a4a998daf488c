//! A bound on how much anonymous callers can write to the audit log.
//!
//! Every use case records its own audit entry in the engine; the access check
//! (`crate::auth::guard`) records only the refusals it makes, which nobody else sees. A
//! signed-in caller's refusal is always recorded (under its name). An anonymous caller's
//! refusal could be sent by anyone at any rate, so [`AnonymousRefusals`] admits at most:
//!
//! - one row per (client address, action) per window of [`WINDOW`] (an IPv6 client by its
//!   /64, as the sign-in limiter counts it), and
//! - [`MAX_ROWS_PER_WINDOW`] rows per window in all, whatever the number of addresses.
//!
//! Refusals past that are counted, not written; the next row written says how many were
//! left out before it. Windows are fixed: the first refusal after one ended starts the next.
//! At most [`MAX_ROWS_PER_WINDOW`] keys are remembered, so the memory is bounded too. The
//! counts live in this process only (lost on restart), which is all they are for.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one row per (client, action) stands for the refusals that follow it.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Rows of anonymous refusals written per window, from all clients together.
pub const MAX_ROWS_PER_WINDOW: usize = 20;

/// See the module's documentation. One per server (in `AppState`).
#[derive(Debug, Default)]
pub struct AnonymousRefusals {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current window started (`None`: no refusal yet).
    started: Option<Instant>,
    /// The (client, action) pairs written in the current window.
    written: HashSet<(Option<IpAddr>, String)>,
    /// Refusals counted but not written since the last row.
    left_out: u64,
}

impl AnonymousRefusals {
    /// Whether to write a row for an anonymous refusal of `action` from `client` at `now`:
    /// `Some(n)` with the number of refusals left out since the last row written, or `None`
    /// (it is counted instead).
    pub fn admit(&self, client: Option<IpAddr>, action: &str, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let expired = state
            .started
            .is_none_or(|at| now.saturating_duration_since(at) >= WINDOW);
        if expired {
            state.started = Some(now);
            state.written.clear();
        }
        let key = (client.map(engine::auth::addr_net), action.to_owned());
        if state.written.len() >= MAX_ROWS_PER_WINDOW || state.written.contains(&key) {
            state.left_out += 1;
            return None;
        }
        state.written.insert(key);
        Some(std::mem::take(&mut state.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("an address"))
    }

    #[test]
    fn one_row_per_client_and_action_per_window_and_a_bounded_total() {
        let r = AnonymousRefusals::default();
        let t0 = Instant::now();
        assert_eq!(r.admit(ip("192.0.2.1"), "release.promote", t0), Some(0));
        for _ in 0..500 {
            assert_eq!(r.admit(ip("192.0.2.1"), "release.promote", t0), None);
        }
        // Another action, another client: a row each, carrying the count left out.
        assert_eq!(r.admit(ip("192.0.2.1"), "env.reveal", t0), Some(500));
        assert_eq!(r.admit(ip("192.0.2.2"), "release.promote", t0), Some(0));
        // One IPv6 host is one client, whichever address of its /64 it uses.
        assert_eq!(r.admit(ip("2001:db8::1"), "x", t0), Some(0));
        assert_eq!(r.admit(ip("2001:db8::2"), "x", t0), None);
        // Many addresses: at most MAX_ROWS_PER_WINDOW rows in all.
        let admitted = (0..1000u32)
            .filter(|i| {
                let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                r.admit(Some(addr), "release.promote", t0).is_some()
            })
            .count();
        assert_eq!(admitted, MAX_ROWS_PER_WINDOW - 4);
        // The next window starts afresh and says how many were left out since the last row
        // (the first of those 1000 carried the one IPv6 refusal left out before it).
        let later = t0 + WINDOW;
        assert_eq!(
            r.admit(ip("192.0.2.1"), "release.promote", later),
            Some(1000 - (MAX_ROWS_PER_WINDOW as u64 - 4))
        );
        assert_eq!(r.admit(None, "release.promote", later), Some(0));
        assert_eq!(r.admit(None, "release.promote", later), None);
    }
}
