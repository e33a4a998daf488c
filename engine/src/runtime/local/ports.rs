//! Ports for the processes that serve HTTP. Each gets one from a range of its own, outside the
//! kernel's ephemeral range (where every outgoing connection on the machine takes a local
//! port, so a port found free there can be taken by anyone a moment later). A port handed out
//! is reserved until its process has ended, so two live processes never get the same one,
//! even while the first has not bound it yet; and it is only handed out when it can be bound
//! right then (another program on the machine may be using it).
//!
//! The reservations are shared by every runtime of this process (the tests run many engines
//! at once); other servers on the same machine should be given ranges of their own.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The default range, where it does not overlap the kernel's ephemeral range.
pub const DEFAULT_PORTS: (u16, u16) = (20000, 29999);
/// The kernel's ephemeral range when it cannot be read (Linux's default).
const LINUX_EPHEMERAL: (u16, u16) = (32768, 60999);
/// Ports below this need privileges the apps do not have.
const FIRST_UNPRIVILEGED: u16 = 1024;
/// How many ports a default range picked around the ephemeral range has at most.
const DEFAULT_LEN: u16 = 10000;

/// Ports handed out and not yet given back, by every allocator of this process.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn taken() -> MutexGuard<'static, BTreeSet<u16>> {
    match TAKEN.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Where the apps' ports come from: `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// `first..=last`; refused when it is empty, has privileged ports (below 1024) or overlaps
    /// the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
    pub fn new(first: u16, last: u16) -> Result<PortRange> {
        if first > last {
            return Err(Error::invalid(
                "ports",
                format!("{first}-{last} is empty: the first port must not be above the last"),
            ));
        }
        if first < FIRST_UNPRIVILEGED {
            return Err(Error::invalid(
                "ports",
                format!(
                    "{first}-{last} has privileged ports: start at {FIRST_UNPRIVILEGED} or above"
                ),
            ));
        }
        let range = PortRange { first, last };
        let (lo, hi) = ephemeral_range();
        if range.overlaps(lo, hi) {
            return Err(Error::invalid(
                "ports",
                format!(
                    "{range} overlaps the kernel's ephemeral port range {lo}-{hi} \
                     (net.ipv4.ip_local_port_range), which outgoing connections take ports \
                     from: choose ports outside it"
                ),
            ));
        }
        Ok(range)
    }

    /// [`DEFAULT_PORTS`], or where the kernel's ephemeral range overlaps it, up to 10,000
    /// ports next to that range (the side with more room).
    pub fn default_here() -> PortRange {
        Self::default_for(ephemeral_range())
    }

    fn default_for((lo, hi): (u16, u16)) -> PortRange {
        let default = PortRange {
            first: DEFAULT_PORTS.0,
            last: DEFAULT_PORTS.1,
        };
        if !default.overlaps(lo, hi) {
            return default;
        }
        let below = (lo > FIRST_UNPRIVILEGED).then(|| PortRange {
            first: lo.saturating_sub(DEFAULT_LEN).max(FIRST_UNPRIVILEGED),
            last: lo - 1,
        });
        let above = (hi < u16::MAX).then(|| PortRange {
            first: hi + 1,
            last: hi.saturating_add(DEFAULT_LEN),
        });
        match (below, above) {
            (Some(b), Some(a)) if a.len() > b.len() => a,
            (Some(b), _) => b,
            (None, Some(a)) => a,
            // The kernel hands out every unprivileged port: nothing is safe, the bind check
            // below is all there is.
            (None, None) => default,
        }
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports it has.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never: a range has at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn overlaps(&self, lo: u16, hi: u16) -> bool {
        self.first <= hi && lo <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The kernel's ephemeral port range (Linux's default when it cannot be read).
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>());
            match (parts.next(), parts.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
                _ => None,
            }
        })
        .unwrap_or(LINUX_EPHEMERAL)
}

/// Hands out the ports of one [`PortRange`], round-robin from a random start (so a port
/// just given back, which old clients may still try, is the last to be reused).
#[derive(Debug)]
pub(crate) struct PortAllocator {
    range: PortRange,
    /// Offset in the range of the next port to try (changed with [`TAKEN`] held).
    next: Mutex<u32>,
}

impl PortAllocator {
    pub(crate) fn new(range: PortRange) -> PortAllocator {
        let start = rand::random_range(0..range.len());
        PortAllocator {
            range,
            next: Mutex::new(start),
        }
    }

    pub(crate) fn range(&self) -> PortRange {
        self.range
    }

    /// A port of the range that no live process of this server holds and that can be bound
    /// now, reserved until the lease is dropped.
    pub(crate) fn lease(&self) -> Result<PortLease> {
        let mut taken = taken();
        let mut next = match self.next.lock() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        let len = self.range.len();
        let mut held = 0;
        for i in 0..len {
            let offset = (*next + i) % len;
            let Ok(port) = u16::try_from(u32::from(self.range.first) + offset) else {
                continue;
            };
            if taken.contains(&port) {
                held += 1;
                continue;
            }
            if bindable(port) {
                taken.insert(port);
                *next = (offset + 1) % len;
                return Ok(PortLease { port });
            }
        }
        Err(Error::Internal(format!(
            "no free port for an HTTP process in the port range {} ({len} ports): {held} are \
             held by running processes, the other {} are in use by other programs",
            self.range,
            len - held
        )))
    }
}

/// Whether a server could listen on `port` now, on any address.
fn bindable(port: u16) -> bool {
    // Binding the wildcard address conflicts with a listener on any address of the port.
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A port reserved for one process; given back when dropped (once the process has ended).
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
}

impl PortLease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        taken().remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_keeps_out_of_the_ephemeral_one() {
        let d = PortRange::default_for((32768, 60999));
        assert_eq!((d.first(), d.last()), DEFAULT_PORTS);
        // An ephemeral range that covers the default: the ports just below it.
        let d = PortRange::default_for((15000, 65535));
        assert_eq!((d.first(), d.last()), (5000, 14999));
        // Little room below: the ports above it.
        let d = PortRange::default_for((2000, 40000));
        assert_eq!((d.first(), d.last()), (40001, 50000));
        let d = PortRange::default_for((1024, 65535));
        assert_eq!((d.first(), d.last()), DEFAULT_PORTS);
        let (lo, hi) = ephemeral_range();
        assert!(!PortRange::default_here().overlaps(lo, hi));
    }

    #[test]
    fn ranges_are_checked() {
        let (lo, hi) = ephemeral_range();
        let err = PortRange::new(lo, hi).unwrap_err().to_string();
        assert!(err.contains("ephemeral"), "{err}");
        assert!(PortRange::new(30000, 29999).is_err());
        assert!(PortRange::new(80, 2000).is_err());
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        // Ports of this test only (other tests use other ranges).
        let range = PortRange::new(30100, 30101).unwrap();
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 30100)).unwrap();
        let ports = PortAllocator::new(range);
        for _ in 0..3 {
            let lease = ports.lease().unwrap();
            assert_eq!(lease.port(), 30101);
        }
        let first = ports.lease().unwrap();
        let err = ports.lease().unwrap_err().to_string();
        assert!(
            err.contains("30100-30101") && err.contains("1 are held by running processes"),
            "{err}"
        );
        drop(busy);
        assert_eq!(ports.lease().unwrap().port(), 30100);
        drop(first);
    }
}
