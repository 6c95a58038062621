//! How long an issued credential lives, on the simulators' clock (tokio's, so paused-time tests
//! see virtual time).

use std::time::Duration;

use tokio::time::Instant;

/// A token's or session's life: issued at a time, for a lifetime, unless revoked first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lease {
    pub issued: Instant,
    pub lifetime: Duration,
    pub revoked: bool,
}

impl Lease {
    pub(crate) fn new(issued: Instant, lifetime: Duration) -> Lease {
        Lease {
            issued,
            lifetime,
            revoked: false,
        }
    }

    /// True until the lifetime has passed or the lease was revoked.
    pub(crate) fn valid(&self, now: Instant) -> bool {
        !self.revoked
            && self
                .issued
                .checked_add(self.lifetime)
                .is_none_or(|end| now < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_end() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, Duration::from_secs(10));
        assert!(lease.valid(t0));
        assert!(lease.valid(t0 + Duration::from_secs(9)));
        assert!(!lease.valid(t0 + Duration::from_secs(10)));
        lease.revoked = true;
        assert!(!lease.valid(t0));
    }
}
