//! The one rule that says whether dynwall is healthy, shared by `dynwall healthcheck` (from the
//! state file) and the metrics endpoint's `/healthz` (from memory).

use std::time::Duration;

/// A cycle older than this many sync intervals means the daemon is stuck or gone.
pub const HEALTHY_WITHIN_INTERVALS: u32 = 3;

/// What is known of the last finished sync cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCycle<'a> {
    /// How long ago it finished.
    pub age: Duration,
    pub ok: bool,
    /// Its one-line error, when it failed.
    pub error: Option<&'a str>,
}

/// Healthy iff a cycle has finished, succeeded, and did so within
/// [`HEALTHY_WITHIN_INTERVALS`] × `interval` (at least one second each). `Err` says why not, in
/// the words `dynwall healthcheck` prints after "unhealthy: ".
pub fn verdict(last: Option<LastCycle<'_>>, interval: Duration) -> Result<(), String> {
    let Some(c) = last else {
        return Err("no cycle has finished yet".to_string());
    };
    let limit = u64::from(HEALTHY_WITHIN_INTERVALS) * interval.as_secs().max(1);
    if !c.ok {
        return Err(format!(
            "last cycle failed: {}",
            c.error.unwrap_or_default()
        ));
    }
    if c.age.as_secs() > limit {
        return Err(format!(
            "last cycle finished {}s ago (limit {limit}s)",
            c.age.as_secs()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn cycle(age: u64, ok: bool) -> Option<LastCycle<'static>> {
        Some(LastCycle {
            age: Duration::from_secs(age),
            ok,
            error: (!ok).then_some("no usable public IPv4 address: sources disagree"),
        })
    }

    #[test]
    fn healthy_means_a_recent_successful_cycle() {
        assert_eq!(verdict(cycle(0, true), MINUTE), Ok(()));
        assert_eq!(verdict(cycle(180, true), MINUTE), Ok(()));
        assert_eq!(
            verdict(cycle(181, true), MINUTE),
            Err("last cycle finished 181s ago (limit 180s)".into())
        );
        assert_eq!(
            verdict(cycle(5, false), MINUTE),
            Err("last cycle failed: no usable public IPv4 address: sources disagree".into())
        );
        assert_eq!(
            verdict(None, MINUTE),
            Err("no cycle has finished yet".into())
        );
        // Sub-second intervals (tests) still allow three seconds.
        assert_eq!(verdict(cycle(3, true), Duration::from_millis(250)), Ok(()));
    }
}
