//! Loopback simulators of the outside world: the clouds dynwall manages and a "what is my IP"
//! service.
//!
//! They are part of the product: `dynwall demo` runs against them, and the integration tests run
//! the real binary against them. They bind 127.0.0.1 on ephemeral ports, run on the caller's
//! tokio runtime, and stop when their handle is dropped or shut down. Each imitates the real
//! service's wire format, quirks included, and shares no types with dynwall's clients.
//!
//! - [`IndigoSim`]: the WebARENA Indigo REST API with its quirks, rate limits, timed power
//!   transitions and fault injection.
//! - [`OpenStackSim`] ([`openstack`]): Keystone v3 or v2.0, Neutron security groups and Nova
//!   servers, with the real server-side rules, error bodies, asynchronous power tasks and fault
//!   injection.
//! - [`SaltSim`] ([`salt`]): VMware's Salt cloud API (CSP token exchange, Tornado XSRF, login,
//!   the RPC bridge running saved jobs) whose jobs can cure a simulated machine through a callback.
//! - [`IpEcho`]: a public-IP echo service whose answer, status and latency can be changed live.
//! - [`NotifyReceiver`]: a webhook endpoint, ntfy server and healthchecks.io ping endpoint in
//!   one, recording every request, with scripted failures and hanging.
//!
//! The cloud simulators give every machine a fake SSH endpoint on its own loopback port, which
//! sends a version line only while the machine runs, its guest is responsive and its firewall
//! admits the client address the test sets (`set_client_ip`) to TCP 22; a hung guest accepts and
//! says nothing.

#![forbid(unsafe_code)]

mod echo;
mod faults;
mod ids;
mod indigo;
mod lease;
pub mod openstack;
mod receiver;
pub mod salt;
mod server;
mod ssh;
#[cfg(test)]
mod testing;

pub use echo::{IpEcho, DEFAULT_IP};
pub use indigo::{
    AbsentInstances, BadToken, CallRecord, Endpoint, IndigoSim, PowerState, SimBuilder,
    SimInstance, SimRule, SimTemplate, StopCodeKey,
};
pub use openstack::OpenStackSim;
pub use receiver::{NotifyReceiver, Received};
pub use salt::SaltSim;
