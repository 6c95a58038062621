//! Every sd-notify call lives here: readiness, status lines, watchdog, reload and stop.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// How often to send `WATCHDOG=1` (half the timeout), given `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
///
/// The rules of libsystemd's `sd_watchdog_enabled()`: the watchdog is armed when `WATCHDOG_USEC`
/// is a positive number and `WATCHDOG_PID` is either unset or this process's pid. (sd-notify
/// 0.4's `watchdog_enabled` requires `WATCHDOG_PID`, so a manager or wrapper that sets only
/// `WATCHDOG_USEC` would see the daemon killed for never pinging.)
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

/// Talks to the service manager, if there is one.
#[derive(Clone, Debug)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` once, at start-up.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let var = |name| std::env::var(name).ok();
        let watchdog = enabled
            .then(|| {
                watchdog_period(
                    var("WATCHDOG_USEC").as_deref(),
                    var("WATCHDOG_PID").as_deref(),
                    std::process::id(),
                )
            })
            .flatten();
        Notifier { enabled, watchdog }
    }

    /// A notifier that says nothing (tests, `--once`).
    pub fn disabled() -> Notifier {
        Notifier {
            enabled: false,
            watchdog: None,
        }
    }

    /// How often to send `WATCHDOG=1`: half of `WatchdogSec=`, when the watchdog is armed.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    /// Config, state and client are up (sent before the first network success on purpose: an
    /// outage at start-up must not fail the service).
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// The one-line status `systemctl status` shows.
    pub fn status(&self, line: &str) {
        self.send(&[NotifyState::Status(line)]);
    }

    /// A watchdog keep-alive; nothing unless the watchdog is armed for this process.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Reload started; must be followed by [`Notifier::ready`].
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_follows_libsystemds_rules() {
        let half = Some(Duration::from_millis(200));
        assert_eq!(watchdog_period(Some("400000"), Some("42"), 42), half);
        assert_eq!(
            watchdog_period(Some("400000"), None, 42),
            half,
            "no WATCHDOG_PID: meant for us"
        );
        assert_eq!(watchdog_period(Some("400000"), Some("41"), 42), None);
        assert_eq!(watchdog_period(Some("400000"), Some("x"), 42), None);
        assert_eq!(watchdog_period(Some("0"), None, 42), None);
        assert_eq!(watchdog_period(Some("soon"), None, 42), None);
        assert_eq!(watchdog_period(None, Some("42"), 42), None);
    }
}
