//! Nova's server state machine: `vm_state`, `task_state` and `power_state`, the `status` derived
//! from them, which actions each state accepts, and the timed task phases that follow an action.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::model::{Server, VmState};
use crate::ssh::Greeting;

/// How long each kind of task takes (from the builder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub stop: Duration,
    pub start: Duration,
    pub reboot: Duration,
}

/// The asynchronous work an accepted action starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Stop,
    Start,
    RebootSoft,
    RebootHard,
}

impl TaskKind {
    /// The `task_state` of each phase and the share of the task's time it takes (in halves).
    fn phases(self) -> &'static [(&'static str, u32)] {
        match self {
            TaskKind::Stop => &[("powering-off", 2)],
            TaskKind::Start => &[("powering-on", 2)],
            TaskKind::RebootSoft => &[("rebooting", 1), ("reboot_started", 1)],
            TaskKind::RebootHard => &[("rebooting_hard", 1), ("reboot_started_hard", 1)],
        }
    }

    fn total(self, t: &Timing) -> Duration {
        match self {
            TaskKind::Stop => t.stop,
            TaskKind::Start => t.start,
            TaskKind::RebootSoft | TaskKind::RebootHard => t.reboot,
        }
    }
}

/// A task in flight: its kind, its current phase and when that phase began.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Task {
    kind: TaskKind,
    phase: usize,
    since: Instant,
}

/// The actions of `POST /servers/{id}/action` the simulator implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Start,
    Reboot { hard: bool },
}

impl Action {
    /// The action's name in Nova's conflict messages.
    fn verb(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Reboot { .. } => "reboot",
        }
    }

    /// How [`super::OpenStackSim::actions`] lists it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::Stop => "os-stop",
            Action::Start => "os-start",
            Action::Reboot { hard: true } => "reboot HARD",
            Action::Reboot { hard: false } => "reboot SOFT",
        }
    }
}

/// Task states a HARD reboot may interrupt (Nova's `ALLOW_REBOOT`): none, a soft reboot, and
/// the pause/suspend family. A HARD reboot in flight is not among them.
const HARD_REBOOT_TASKS: &[&str] = &[
    "rebooting",
    "reboot_pending",
    "reboot_started",
    "resuming",
    "unpausing",
    "pausing",
    "suspending",
];

pub(crate) struct ServerRec {
    pub name: String,
    pub vm_state: VmState,
    pub power_state: u8,
    pub task: Option<Task>,
    /// A task state set by hand: shown as is, never completes by itself.
    pub raw_task: Option<String>,
    pub fixed_ipv4: Option<String>,
    pub floating_ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub groups: Vec<String>,
    pub responsive: bool,
    pub broken: bool,
    pub stop_hangs: bool,
    pub locked: bool,
    /// The server has been powered off since its guest last hung; powering on cures the hang.
    pub cold_since_hang: bool,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub mac: String,
}

impl ServerRec {
    /// The current `task_state`.
    pub(crate) fn task_state(&self) -> Option<&str> {
        match (&self.raw_task, &self.task) {
            (Some(raw), _) => Some(raw.as_str()),
            (None, Some(t)) => t.kind.phases().get(t.phase).map(|(name, _)| *name),
            (None, None) => None,
        }
    }

    /// The `status` Nova derives from `vm_state` and `task_state`.
    pub(crate) fn status(&self) -> &'static str {
        status_of(self.vm_state, self.task_state())
    }

    /// Advances the task in flight through every phase whose time has passed (a stop whose
    /// server has `stop_hangs` never advances).
    pub(crate) fn settle(&mut self, now: Instant, timing: &Timing) {
        while let Some(task) = self.task {
            if task.kind == TaskKind::Stop && self.stop_hangs {
                return;
            }
            let (_, share) = task.kind.phases()[task.phase];
            let length = task.kind.total(timing) * share / 2;
            let Some(end) = task.since.checked_add(length) else {
                return;
            };
            if now < end {
                return;
            }
            self.advance(end);
        }
    }

    /// Completes the task in flight at once, every phase (a hung stop stays).
    pub(crate) fn finish(&mut self, now: Instant) {
        while self.task.is_some() && !(self.stop_hangs && self.is_stopping()) {
            self.advance(now);
        }
    }

    fn is_stopping(&self) -> bool {
        self.task.is_some_and(|t| t.kind == TaskKind::Stop)
    }

    /// Moves to the next phase, or completes the task, as of `at`.
    fn advance(&mut self, at: Instant) {
        let Some(task) = self.task else {
            return;
        };
        self.updated = SystemTime::now();
        if task.phase + 1 < task.kind.phases().len() {
            self.task = Some(Task {
                phase: task.phase + 1,
                since: at,
                ..task
            });
            return;
        }
        self.task = None;
        match task.kind {
            TaskKind::Stop => self.power_off(),
            TaskKind::Start | TaskKind::RebootSoft | TaskKind::RebootHard => {
                // A reboot destroys and recreates the guest (a soft one falls back to that when the
                // guest ignores it), which cures a hang like a start after a stop.
                if task.kind != TaskKind::Start {
                    self.cold_since_hang = true;
                }
                self.power_on();
            }
        }
    }

    fn power_off(&mut self) {
        self.vm_state = VmState::Stopped;
        self.power_state = VmState::Stopped.power_state();
        self.cold_since_hang = true;
    }

    fn power_on(&mut self) {
        self.vm_state = VmState::Active;
        self.power_state = VmState::Active.power_state();
        if self.cold_since_hang {
            self.cold_since_hang = false;
            if !self.broken {
                self.responsive = true;
            }
        }
    }

    /// Marks the guest hung (`false`) or fine (`true`); a new hang needs a new power cycle.
    pub(crate) fn set_responsive(&mut self, responsive: bool) {
        self.responsive = responsive;
        if !responsive {
            self.cold_since_hang = false;
        }
    }

    /// Puts the server in `vm_state`, settled, with no task.
    pub(crate) fn set_vm_state(&mut self, vm_state: VmState) {
        self.task = None;
        self.raw_task = None;
        self.vm_state = vm_state;
        self.power_state = vm_state.power_state();
        self.updated = SystemTime::now();
    }

    /// Nova's answer to `action` in the current state: `Ok` when accepted (the task has begun),
    /// else the 409 message.
    pub(crate) fn act(&mut self, id: &str, action: Action, now: Instant) -> Result<(), String> {
        if self.locked {
            return Err(format!("Instance {id} is locked"));
        }
        let vm = self.vm_state;
        let task = self.task_state();
        let vm_ok = match action {
            Action::Stop => matches!(vm, VmState::Active | VmState::Rescued | VmState::Error),
            Action::Start => vm == VmState::Stopped,
            Action::Reboot { hard: false } => vm == VmState::Active,
            Action::Reboot { hard: true } => matches!(
                vm,
                VmState::Active
                    | VmState::Stopped
                    | VmState::Paused
                    | VmState::Suspended
                    | VmState::Error
            ),
        };
        let conflict = |what: &str, value: &str| {
            format!(
                "Cannot '{}' instance {id} while it is in {what} {value}",
                action.verb()
            )
        };
        if !vm_ok {
            return Err(conflict("vm_state", vm.as_wire()));
        }
        let task_ok = match (action, task) {
            (_, None) => true,
            (Action::Reboot { hard: true }, Some(t)) => HARD_REBOOT_TASKS.contains(&t),
            (_, Some(_)) => false,
        };
        if let (false, Some(t)) = (task_ok, task) {
            return Err(conflict("task_state", t));
        }
        let kind = match action {
            Action::Stop => TaskKind::Stop,
            Action::Start => TaskKind::Start,
            Action::Reboot { hard: false } => TaskKind::RebootSoft,
            Action::Reboot { hard: true } => TaskKind::RebootHard,
        };
        self.raw_task = None;
        self.task = Some(Task {
            kind,
            phase: 0,
            since: now,
        });
        self.updated = SystemTime::now();
        Ok(())
    }

    /// What the server's SSH endpoint says to a client its firewall does or does not `admit`.
    /// The guest is up while the server is active and powered on, outside a reboot; during a stop
    /// a healthy guest is shutting down (nothing listens) while a hung one still holds the port.
    pub(crate) fn greeting(&self, admitted: bool) -> Greeting {
        let task = self.task_state();
        let up = self.vm_state == VmState::Active
            && self.power_state == 1
            && !task.is_some_and(|t| t.starts_with("reboot"));
        let stopping = task == Some("powering-off");
        Greeting::judge(
            up && !(stopping && self.responsive),
            self.responsive,
            admitted,
        )
    }

    /// A public snapshot.
    pub(crate) fn snapshot(&self, id: &str) -> Server {
        Server {
            id: id.to_owned(),
            name: self.name.clone(),
            status: self.status().to_owned(),
            vm_state: self.vm_state,
            task_state: self.task_state().map(str::to_owned),
            power_state: self.power_state,
            fixed_ipv4: self.fixed_ipv4.clone(),
            floating_ipv4: self.floating_ipv4.clone(),
            ipv6: self.ipv6.clone(),
            security_groups: self.groups.clone(),
            responsive: self.responsive,
            broken: self.broken,
            stop_hangs: self.stop_hangs,
            locked: self.locked,
        }
    }
}

/// Nova's `_STATE_MAP`: the `status` of a (`vm_state`, `task_state`) pair.
pub(crate) fn status_of(vm: VmState, task: Option<&str>) -> &'static str {
    let task = task.unwrap_or("");
    match vm {
        VmState::Active => match task {
            "rebooting" | "reboot_pending" | "reboot_started" => "REBOOT",
            "rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard" => "HARD_REBOOT",
            "updating_password" => "PASSWORD",
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            "migrating" => "MIGRATING",
            "resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish" => "RESIZE",
            _ => "ACTIVE",
        },
        VmState::Stopped => match task {
            "resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish" => "RESIZE",
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            _ => "SHUTOFF",
        },
        VmState::Building => "BUILD",
        VmState::Error => match task {
            "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning" => "REBUILD",
            _ => "ERROR",
        },
        VmState::Paused => "PAUSED",
        VmState::Rescued => "RESCUE",
        VmState::Shelved => "SHELVED",
        VmState::ShelvedOffloaded => "SHELVED_OFFLOADED",
        VmState::Suspended => "SUSPENDED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        stop: Duration::from_secs(10),
        start: Duration::from_secs(10),
        reboot: Duration::from_secs(10),
    };

    fn server(vm: VmState) -> ServerRec {
        ServerRec {
            name: "vps1".to_owned(),
            vm_state: vm,
            power_state: vm.power_state(),
            task: None,
            raw_task: None,
            fixed_ipv4: None,
            floating_ipv4: None,
            ipv6: None,
            groups: Vec::new(),
            responsive: true,
            broken: false,
            stop_hangs: false,
            locked: false,
            cold_since_hang: false,
            created: SystemTime::now(),
            updated: SystemTime::now(),
            mac: String::new(),
        }
    }

    fn view(s: &ServerRec) -> (&'static str, Option<&str>, u8) {
        (s.status(), s.task_state(), s.power_state)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn stop_then_start_follow_the_recorded_states() {
        let t0 = Instant::now();
        let mut s = server(VmState::Active);
        assert_eq!(s.act("i", Action::Stop, t0), Ok(()));
        assert_eq!(view(&s), ("ACTIVE", Some("powering-off"), 1));
        assert_eq!(
            s.act("i", Action::Stop, t0).unwrap_err(),
            "Cannot 'stop' instance i while it is in task_state powering-off"
        );
        s.settle(t0 + secs(9), &T);
        assert_eq!(view(&s), ("ACTIVE", Some("powering-off"), 1));
        s.settle(t0 + secs(10), &T);
        assert_eq!(view(&s), ("SHUTOFF", None, 4));
        assert_eq!(
            s.act("i", Action::Stop, t0).unwrap_err(),
            "Cannot 'stop' instance i while it is in vm_state stopped"
        );
        let t1 = t0 + secs(20);
        assert_eq!(s.act("i", Action::Start, t1), Ok(()));
        assert_eq!(view(&s), ("SHUTOFF", Some("powering-on"), 4));
        s.settle(t1 + secs(10), &T);
        assert_eq!(view(&s), ("ACTIVE", None, 1));
        assert_eq!(
            s.act("i", Action::Start, t1).unwrap_err(),
            "Cannot 'start' instance i while it is in vm_state active"
        );
    }

    #[test]
    fn hard_reboot_of_a_stopped_server_ends_active() {
        let t0 = Instant::now();
        let mut s = server(VmState::Stopped);
        assert_eq!(s.act("i", Action::Reboot { hard: true }, t0), Ok(()));
        assert_eq!(view(&s), ("SHUTOFF", Some("rebooting_hard"), 4));
        assert_eq!(
            s.act("i", Action::Start, t0).unwrap_err(),
            "Cannot 'start' instance i while it is in task_state rebooting_hard"
        );
        assert!(s.act("i", Action::Reboot { hard: true }, t0).is_err());
        s.settle(t0 + secs(5), &T);
        assert_eq!(view(&s), ("SHUTOFF", Some("reboot_started_hard"), 4));
        s.settle(t0 + secs(10), &T);
        assert_eq!(view(&s), ("ACTIVE", None, 1));
    }

    #[test]
    fn hard_reboot_escalates_a_soft_one_but_not_a_stop() {
        let t0 = Instant::now();
        let mut s = server(VmState::Active);
        assert_eq!(s.act("i", Action::Reboot { hard: false }, t0), Ok(()));
        assert_eq!(view(&s), ("REBOOT", Some("rebooting"), 1));
        assert_eq!(
            s.act("i", Action::Reboot { hard: false }, t0).unwrap_err(),
            "Cannot 'reboot' instance i while it is in task_state rebooting"
        );
        assert_eq!(s.act("i", Action::Reboot { hard: true }, t0), Ok(()));
        assert_eq!(view(&s), ("HARD_REBOOT", Some("rebooting_hard"), 1));
        s.finish(t0);
        assert_eq!(view(&s), ("ACTIVE", None, 1));
        assert_eq!(s.act("i", Action::Stop, t0), Ok(()));
        assert_eq!(
            s.act("i", Action::Reboot { hard: true }, t0).unwrap_err(),
            "Cannot 'reboot' instance i while it is in task_state powering-off"
        );
    }

    #[test]
    fn a_hung_stop_waits_for_release() {
        let t0 = Instant::now();
        let mut s = server(VmState::Active);
        s.stop_hangs = true;
        assert_eq!(s.act("i", Action::Stop, t0), Ok(()));
        s.settle(t0 + secs(3600), &T);
        s.finish(t0);
        assert_eq!(view(&s), ("ACTIVE", Some("powering-off"), 1));
        s.stop_hangs = false;
        s.settle(t0 + secs(3600), &T);
        assert_eq!(view(&s), ("SHUTOFF", None, 4));
    }

    #[test]
    fn locked_and_hand_set_tasks_refuse_actions() {
        let t0 = Instant::now();
        let mut s = server(VmState::Active);
        s.locked = true;
        assert_eq!(
            s.act("i", Action::Stop, t0).unwrap_err(),
            "Instance i is locked"
        );
        s.locked = false;
        s.raw_task = Some("image_snapshot".to_owned());
        assert_eq!(view(&s), ("ACTIVE", Some("image_snapshot"), 1));
        assert!(s.act("i", Action::Reboot { hard: true }, t0).is_err());
        s.settle(t0 + secs(3600), &T);
        assert_eq!(s.task_state(), Some("image_snapshot"));
        let mut e = server(VmState::Error);
        assert_eq!(view(&e), ("ERROR", None, 4));
        assert_eq!(e.act("i", Action::Reboot { hard: true }, t0), Ok(()));
        assert!(server(VmState::Building)
            .act("i", Action::Stop, t0)
            .unwrap_err()
            .ends_with("vm_state building"));
    }

    #[test]
    fn a_power_cycle_cures_a_hang_unless_broken() {
        let t0 = Instant::now();
        let mut s = server(VmState::Active);
        s.set_responsive(false);
        assert_eq!(s.greeting(true), Greeting::Silent);
        assert_eq!(s.act("i", Action::Stop, t0), Ok(()));
        assert_eq!(
            s.greeting(true),
            Greeting::Silent,
            "a hung guest holds the port while stopping"
        );
        s.finish(t0);
        assert_eq!(s.greeting(true), Greeting::Close);
        assert_eq!(s.act("i", Action::Start, t0), Ok(()));
        assert_eq!(s.greeting(true), Greeting::Close, "powering on");
        s.finish(t0);
        assert!(s.responsive);
        assert_eq!(s.greeting(true), Greeting::Banner);
        assert_eq!(s.greeting(false), Greeting::Silent);

        s.broken = true;
        s.set_responsive(false);
        assert_eq!(s.act("i", Action::Reboot { hard: true }, t0), Ok(()));
        assert_eq!(s.greeting(true), Greeting::Close, "rebooting");
        s.finish(t0);
        assert!(!s.responsive);
        s.broken = false;
        assert_eq!(s.act("i", Action::Reboot { hard: true }, t0), Ok(()));
        s.finish(t0);
        assert!(s.responsive);
    }

    #[test]
    fn status_follows_nova_state_map() {
        assert_eq!(status_of(VmState::Active, Some("powering-off")), "ACTIVE");
        assert_eq!(status_of(VmState::Stopped, Some("powering-on")), "SHUTOFF");
        assert_eq!(
            status_of(VmState::Active, Some("reboot_pending_hard")),
            "HARD_REBOOT"
        );
        assert_eq!(
            status_of(VmState::ShelvedOffloaded, None),
            "SHELVED_OFFLOADED"
        );
        assert_eq!(status_of(VmState::Rescued, None), "RESCUE");
    }
}
