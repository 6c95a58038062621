//! Reading every state format dynwall ever wrote.
//!
//! - Version 1: one cloud; `firewalls` and `instances` at the top, keyed by id. They become the
//!   records of the cloud named `indigo` (the only cloud version 1 knew).
//! - Version 2: records keyed by cloud, then id.

use serde_json::{Map, Value};

use super::{State, VERSION};
use crate::ids::CloudName;

/// Parses a state file of any known version into the current format; an error says why the
/// file cannot be used (it is then moved aside).
pub(super) fn parse(bytes: &[u8]) -> Result<State, String> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Some(obj) = v.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let version = obj.get("version").and_then(Value::as_u64).unwrap_or(0);
    match version {
        1 => from_v1(obj),
        VERSION_2 => {}
        other => return Err(format!("unsupported state version {other}")),
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

const VERSION_2: u64 = VERSION as u64;

/// Moves the version-1 records under the `indigo` cloud.
fn from_v1(obj: &mut Map<String, Value>) {
    let mut cloud = Map::new();
    for key in ["firewalls", "instances"] {
        if let Some(records) = obj.remove(key) {
            cloud.insert(key.to_string(), records);
        }
    }
    let mut clouds = Map::new();
    clouds.insert(CloudName::INDIGO.to_string(), Value::Object(cloud));
    obj.insert("clouds".into(), Value::Object(clouds));
    obj.insert("version".into(), Value::from(VERSION));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FirewallId, InstanceId};
    use crate::probe::record::Step;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn a_version_1_file_after_a_finished_remediation_keeps_every_record() {
        let s = parse(&fixture("state-v1-remediated.json")).unwrap();
        assert_eq!(s.version, VERSION);
        assert_eq!(s.last_ip, Some("81.2.69.161".parse().unwrap()));
        let indigo = CloudName::indigo();
        let fw = s.firewall(&indigo, &FirewallId("12836".into())).unwrap();
        assert_eq!(fw.ip, Some("81.2.69.161".parse().unwrap()));
        assert_eq!(fw.updated_at, Some(1_796_299_693));
        let web = s.instance(&indigo, &InstanceId("616516".into())).unwrap();
        assert_eq!(web.actions, vec![1_796_299_693]);
        assert_eq!(web.backoff_until, Some(1_796_300_296));
        assert!(web.remediation.is_none());
        assert!(s.instance(&indigo, &InstanceId("616517".into())).is_some());
        assert!(s.last_cycle.as_ref().is_some_and(|c| c.ok));
    }

    #[test]
    fn a_version_1_file_with_a_stop_in_flight_keeps_the_remediation() {
        let s = parse(&fixture("state-v1-in-flight.json")).unwrap();
        let web = s
            .instance(&CloudName::indigo(), &InstanceId("616516".into()))
            .unwrap();
        let rem = web.remediation.as_ref().expect("in flight");
        assert!(rem.issued);
        assert!(matches!(rem.step, Step::Stopping { .. }));
        assert!(web.incident_acted);
    }

    #[test]
    fn unknown_versions_and_shapes_are_refused() {
        assert!(parse(b"{\"version\":99}").is_err());
        assert!(parse(b"{}").is_err());
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{\"version\":2,\"clouds\":{\"indigo\":{}}}").is_ok());
    }
}
