//! What a server's fake SSH endpoint says to a connection: the server's state decides whether
//! anything listens, its security groups whether the client's packets arrive.

use std::net::IpAddr;

use tokio::time::Instant;

use super::rules;
use super::state::World;
use crate::ssh::Greeting;

/// Counts a connection to server `id` and decides what it gets.
pub(crate) fn accept(w: &mut World, id: &str, now: Instant) -> Greeting {
    *w.ssh_conns.entry(id.to_owned()).or_insert(0) += 1;
    let admitted = admits(w, id);
    let timing = w.cfg.timing;
    match w.servers.get_mut(id) {
        Some(server) => {
            server.settle(now, &timing);
            server.greeting(admitted)
        }
        None => Greeting::Close,
    }
}

/// True when no client address is set, the server's port has no security group (port security
/// off), or an ingress rule of one of its groups admits the client address to TCP 22. An address
/// that does not parse is admitted by no rule.
pub(crate) fn admits(w: &World, id: &str) -> bool {
    let Some(server) = w.servers.get(id) else {
        return false;
    };
    let Some(client) = &w.client_ip else {
        return true;
    };
    if server.groups.is_empty() {
        return true;
    }
    let Ok(client) = client.trim().parse::<IpAddr>() else {
        return false;
    };
    server
        .groups
        .iter()
        .filter_map(|g| w.groups.get(g))
        .flat_map(|g| g.rules.values())
        .any(|r| rules::admits(&r.rule, client, 22))
}
