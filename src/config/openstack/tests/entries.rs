//! Which cloud an entry belongs to, and the keys each provider takes on its entries.

use super::*;

#[test]
fn entries_pick_their_cloud_and_refuse_the_other_providers_keys() {
    let d = Dir::new();
    let os = "[openstack.home]\nauth_url = \"https://k.example/v3\"\napplication_credential_id = \"a\"\napplication_credential_secret = \"s\"\n";
    let cfg = d
        .parse(
            &format!("{os}\n[[firewall]]\nsecurity_group = \"ssh\"\nport = 2222\n"),
            &[],
        )
        .unwrap();
    assert_eq!(cfg.firewalls[0].id.0, "ssh");
    assert!(cfg.firewalls[0].instances.is_empty());
    assert_eq!(cfg.probes[0].cloud, CloudName("home".into()));
    assert_eq!(cfg.probes[0].remediation, Remediation::StopStart);
    let (key, reason) = d.error(
        &format!("{os}\n[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n"),
        &[],
    );
    assert_eq!(key, "probe[0].cloud");
    assert!(
        reason.contains("\"home\"") && reason.contains("\"indigo\""),
        "{reason}"
    );
    let both = format!("{os}\n[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n");
    let text = format!(
        "{both}\n[[firewall]]\ncloud = \"indigo\"\ntemplate = 1\ninstances = []\nsecurity_group = \"x\"\n[[probe]]\ncloud = \"indigo\"\ninstance = 1\n"
    );
    match Config::parse(&text, &d.path("dynwall.toml"), &d.env(&[])).unwrap_err() {
        ConfigError::Invalid { key, reason, .. } => {
            assert_eq!(key, "firewall[0].security_group");
            assert!(reason.contains("OpenStack"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let text = format!(
        "{both}\n[[probe]]\ncloud = \"indigo\"\ninstance = 1\nremediation = \"hard-reboot\"\n"
    );
    match Config::parse(&text, &d.path("dynwall.toml"), &d.env(&[])).unwrap_err() {
        ConfigError::Invalid { key, .. } => assert_eq!(key, "probe[0].remediation"),
        other => panic!("{other:?}"),
    }
    let text = format!(
        "{both}\n[[probe]]\ncloud = \"home\"\ninstance = \"vps1\"\nremediation = \"hard-reboot\"\n"
    );
    let cfg = Config::parse(&text, &d.path("dynwall.toml"), &d.env(&[])).unwrap();
    assert_eq!(cfg.probes[0].remediation, Remediation::HardReboot);
}

#[test]
fn an_openstack_probe_may_name_its_server_with_spaces_and_indigo_ids_stay_strict() {
    let d = Dir::new();
    let os = "[openstack.home]\nauth_url = \"https://k.example/v3\"\napplication_credential_id = \"a\"\napplication_credential_secret = \"s\"\n";
    let both = format!("{os}\n[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n");
    let probe = |cloud: &str, instance: &str| {
        let text = format!("{both}\n[[probe]]\ncloud = \"{cloud}\"\ninstance = {instance}\n");
        Config::parse(&text, &d.path("dynwall.toml"), &d.env(&[]))
    };
    for (written, id) in [
        ("\"web 1\"", "web 1"),
        ("\"web  server 1\"", "web  server 1"),
        (
            "\"6f1c2a7e-0d4b-4a8e-9c3f-2b1d5e7a9c01\"",
            "6f1c2a7e-0d4b-4a8e-9c3f-2b1d5e7a9c01",
        ),
    ] {
        let cfg = probe("home", written).unwrap();
        assert_eq!(cfg.probes[0].instance, InstanceId(id.into()), "{written}");
    }
    for (written, why) in [
        ("\" web 1\"", "leading or trailing whitespace"),
        ("\"web 1 \"", "leading or trailing whitespace"),
        ("\"web\\t1\"", "control character"),
        ("\"web\\u00071\"", "control character"),
        ("\"web 1\\n\"", "control character"),
        ("\"\"", "empty"),
        ("\"   \"", "empty"),
    ] {
        match probe("home", written).unwrap_err() {
            ConfigError::Invalid { key, reason, .. } => {
                assert_eq!(key, "probe[0].instance", "{written}");
                assert!(reason.contains(why), "{written}: {reason}");
            }
            other => panic!("{written}: {other:?}"),
        }
    }
    // Indigo ids are numbers: as strict as ever, surrounding whitespace dropped.
    for (written, id) in [
        ("12836", "12836"),
        ("\"12836\"", "12836"),
        ("\" 12836 \"", "12836"),
    ] {
        let cfg = probe("indigo", written).unwrap();
        assert_eq!(cfg.probes[0].instance, InstanceId(id.into()), "{written}");
    }
    for written in ["\"web 1\"", "\"128 36\"", "\"\"", "\"  \"", "0"] {
        match probe("indigo", written).unwrap_err() {
            ConfigError::Invalid { key, .. } => assert_eq!(key, "probe[0].instance", "{written}"),
            other => panic!("{written}: {other:?}"),
        }
    }
}
