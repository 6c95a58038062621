//! Loopback simulators of the outside world: the Indigo API and a "what is my IP" service.
//!
//! Both are part of the product: `dynwall demo` runs against them, and the integration tests run
//! the real binary against them. They bind 127.0.0.1 on an ephemeral port, run on the caller's
//! tokio runtime, and stop when their handle is dropped or shut down.
//!
//! - [`IndigoSim`]: an independent imitation of the WebARENA Indigo REST API wire format with its
//!   quirks, rate limits, timed power transitions and fault injection.
//! - [`IpEcho`]: a public-IP echo service whose answer, status and latency can be changed live.

mod echo;
mod indigo;
mod server;

pub use echo::{IpEcho, DEFAULT_IP};
pub use indigo::{
    AbsentInstances, BadToken, CallRecord, Endpoint, IndigoSim, PowerState, SimBuilder,
    SimInstance, SimRule, SimTemplate, StopCodeKey,
};
