use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::*;
use crate::ids::FirewallId;

const MINIMAL: &str = r#"
[indigo]
api_key = "k"
api_secret = "s"

[[firewall]]
template = 12836
instances = [616516, "616517"]
"#;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/dynwall/dynwall.toml"), &env(&[]))
}

#[test]
fn the_shipped_example_parses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("indigo_api_key"), "key-from-file\n").unwrap();
    std::fs::write(
        dir.path().join("indigo_api_secret"),
        "  secret-from-file  \n",
    )
    .unwrap();
    let text = include_str!("../../config/dynwall.toml")
        .replace("/etc/dynwall/", &format!("{}/", dir.path().display()));
    let cfg = Config::parse(&text, &dir.path().join("dynwall.toml"), &env(&[])).unwrap();
    assert_eq!(cfg.daemon.interval, Duration::from_secs(60));
    assert_eq!(cfg.daemon.reconcile, Duration::from_secs(900));
    assert_eq!(cfg.resolver.quorum, Some(2));
    assert_eq!(cfg.resolver.sources.len(), 4);
    assert_eq!(cfg.resolver.sources, default_sources().unwrap()[..4]);
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_key.expose(),
        "key-from-file"
    );
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_secret.expose(),
        "secret-from-file"
    );
    assert_eq!(cfg.firewalls[0].id, FirewallId("12836".into()));
    // Nothing but the home address is allowed, and nothing is probed, until the user says so:
    // a user who edits only the ids opens the port to no example network.
    assert!(cfg.firewalls[0].keep.is_empty());
    assert!(cfg.probes.is_empty());
    assert_eq!(cfg.tracked_families(), [Family::Ipv4]);

    assert_eq!(cfg.metrics, None);
    assert!(cfg.notify.is_empty());

    // Its examples are valid as they stand once uncommented ("# key = …" → "key = …").
    for (file, content) in [
        ("ntfy_url", "https://ntfy.sh/dynwall-Xq7r9Tz2\n"),
        ("ntfy_token", "tk_example\n"),
        ("openstack_home_secret", "appcred-secret\n"),
        ("salt_api_token", "csp-api-token\n"),
        (
            "healthchecks_url",
            "https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278\n",
        ),
    ] {
        std::fs::write(dir.path().join(file), content).unwrap();
    }
    let uncommented = uncomment_examples(&text);
    let cfg = Config::parse(&uncommented, &dir.path().join("dynwall.toml"), &env(&[])).unwrap();
    assert_eq!(cfg.firewalls[0].keep[0].to_string(), "198.51.100.0/24");
    assert_eq!(cfg.resolver.sources, default_sources().unwrap());
    assert_eq!(cfg.probes[0].check, ProbeCheck::Ssh);
    assert_eq!(cfg.probes[0].address, None);
    assert_eq!(cfg.probes[0].window, Duration::from_secs(86_400));
    assert!(cfg.probes[0].salt.is_some() && cfg.salt.is_some());
    assert_eq!(
        cfg.metrics.unwrap().listen.to_string(),
        crate::config::EXAMPLE_LISTEN
    );
    let kinds: Vec<&str> = cfg.notify.iter().map(|n| n.kind.name()).collect();
    assert_eq!(kinds, ["ntfy", "healthchecks", "webhook"]);
    assert_eq!(cfg.openstack.len(), 1);
    assert_eq!(cfg.firewalls[1].id, FirewallId("ssh-from-home".into()));
    assert_eq!(
        cfg.probes[1].remediation,
        crate::config::Remediation::HardReboot
    );
    assert_eq!(cfg.notify[0].label(), "notify[0] ntfy https://ntfy.sh/***");
}

/// `text` with every commented-out example line made live: a line that is `# ` followed by a
/// table header or `key = …`. Prose, and illustrations indented further (`#   key = …`), stay.
fn uncomment_examples(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn defaults_fill_a_minimal_config() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.daemon.interval, DEFAULT_INTERVAL);
    assert_eq!(cfg.daemon.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(
        cfg.indigo.as_ref().unwrap().endpoint.as_str(),
        "https://api.customer.jp/"
    );
    assert_eq!(cfg.resolver.sources, default_sources().unwrap());
    assert_eq!(cfg.resolver.quorum, None);
    let fw = &cfg.firewalls[0];
    assert_eq!(
        fw.instances,
        vec![InstanceId("616516".into()), InstanceId("616517".into())]
    );
    assert_eq!((fw.protocol.as_str(), fw.port.as_str()), ("TCP", "22"));
    assert_eq!(fw.family, Tracked::Ipv4);
}

#[test]
fn secrets_come_from_env_and_systemd_credentials_and_never_print() {
    let text = "[[firewall]]\ntemplate = 1\ninstances = []\n";
    let p = Path::new("/x/dynwall.toml");
    let cfg = Config::parse(
        text,
        p,
        &env(&[
            ("IndigoApiKey", "seed-key"),
            ("IndigoApiPrivateKey", "seed-secret"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.indigo.as_ref().unwrap().api_key.expose(), "seed-key");
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_secret.expose(),
        "seed-secret"
    );
    let cfg = Config::parse(
        text,
        p,
        &env(&[
            ("DYNWALL_INDIGO_API_KEY", "new-key"),
            ("IndigoApiKey", "seed-key"),
            ("DYNWALL_INDIGO_API_SECRET", "new-secret"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.indigo.as_ref().unwrap().api_key.expose(), "new-key");
    let dbg = format!("{cfg:?}");
    assert!(
        !dbg.contains("new-key") && !dbg.contains("new-secret"),
        "{dbg}"
    );

    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("indigo_api_key"), "cred-key\n").unwrap();
    std::fs::write(creds.path().join("indigo_api_secret"), "cred-secret\n").unwrap();
    let cfg = Config::parse(
        text,
        p,
        &env(&[
            ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
            ("DYNWALL_INDIGO_API_KEY", "env-key"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.indigo.as_ref().unwrap().api_key.expose(), "cred-key");
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_secret.expose(),
        "cred-secret"
    );
}

#[test]
fn a_systemd_credential_is_preferred_to_the_file_the_config_names() {
    // The shipped config names root-only files; the units hand the same files over as
    // credentials, which the service's DynamicUser can read.
    let text = "[indigo]\napi_key_file = \"/nonexistent/indigo_api_key\"\n\
                api_secret_file = \"/nonexistent/indigo_api_secret\"\n\
                [[firewall]]\ntemplate = 1\ninstances = []\n";
    let p = Path::new("/x/dynwall.toml");
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("indigo_api_key"), "cred-key\n").unwrap();
    std::fs::write(creds.path().join("indigo_api_secret"), "cred-secret\n").unwrap();
    let cfg = Config::parse(
        text,
        p,
        &env(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(cfg.indigo.as_ref().unwrap().api_key.expose(), "cred-key");
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_secret.expose(),
        "cred-secret"
    );

    // Without the credential (run by hand, or in a container) the named file is read.
    let err = Config::parse(text, p, &env(&[])).unwrap_err().to_string();
    assert!(
        err.contains("indigo.api_key_file") && err.contains("/nonexistent/indigo_api_key"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = Config::parse(
        text,
        p,
        &env(&[("CREDENTIALS_DIRECTORY", empty.path().to_str().unwrap())]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("indigo.api_key_file"), "{err}");
}

#[test]
fn state_dir_defaults_to_systemds_state_directory() {
    let cfg = Config::parse(
        MINIMAL,
        Path::new("/x.toml"),
        &env(&[("STATE_DIRECTORY", "/var/lib/dynwall-a:/var/lib/other")]),
    )
    .unwrap();
    assert_eq!(cfg.daemon.state_dir, PathBuf::from("/var/lib/dynwall-a"));
}

#[test]
fn loopback_endpoints_and_lan_sources_may_use_plain_http() {
    let text = r#"
[indigo]
endpoint = "http://127.0.0.1:8080"
api_key = "k"
api_secret = "s"
[resolver]
quorum = 1
[[resolver.source]]
kind = "http"
url = "http://192.168.1.1/ip"
[[resolver.source]]
kind = "http-json"
family = "ipv6"
url = "http://[::1]:9000/json"
field = "/data/ip"
[[firewall]]
template = "7"
instances = []
"#;
    let cfg = parse(text).unwrap();
    assert_eq!(
        cfg.indigo.as_ref().unwrap().endpoint.as_str(),
        "http://127.0.0.1:8080/"
    );
    assert_eq!(
        cfg.resolver.sources[1],
        SourceConfig {
            family: Family::Ipv6,
            kind: SourceKind::HttpJson {
                url: Url::parse("http://[::1]:9000/json").unwrap(),
                field: JsonField::Pointer("/data/ip".into()),
            }
        }
    );
}

/// Each invalid config must fail naming the dotted key; none may mention a secret.
#[test]
fn invalid_configs_name_the_key_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("[daemon]\nintervall = \"60s\"\n", "daemon.intervall", "unknown key"),
        ("[daemon]\ninterval = \"60 parsecs\"\n", "daemon.interval", "invalid duration"),
        ("[daemon]\ninterval = \"0s\"\n", "daemon.interval", "greater than zero"),
        ("[daemon]\ninterval = 60\n", "daemon.interval", "with a unit"),
        ("[daemon]\nreconcile = \"soon\"\n", "daemon.reconcile", "invalid duration"),
        ("[resolver]\nquorum = 0\n", "resolver.quorum", "at least 1"),
        (
            "[resolver]\nquorum = 5\n",
            "resolver.quorum",
            "5 IPv4 sources must agree, but only 4 IPv4 sources are configured",
        ),
        (
            "[[resolver.source]]\nkind = \"http\"\nurl = \"http://ip.example.com\"\n",
            "resolver.source[0].url",
            "plain http",
        ),
        (
            "[[resolver.source]]\nkind = \"ftp\"\nurl = \"https://x.example\"\n",
            "resolver.source[0].kind",
            "unknown source kind \"ftp\" (expected one of \"http\", \"http-json\", \"dns\"",
        ),
        (
            "[[resolver.source]]\nkind = \"http-json\"\nurl = \"https://x.example\"\n",
            "resolver.source[0].field",
            "missing",
        ),
        (
            "[[resolver.source]]\nkind = \"http\"\nurl = \"https://x.example\"\nfeild = \"ip\"\n",
            "resolver.source[0].feild",
            "unknown key",
        ),
        (
            "[indigo]\nendpoint = \"http://api.customer.jp\"\n",
            "indigo.endpoint",
            "plain http",
        ),
        // Host names are taken in their ASCII form (no IDNA tables in the binary).
        (
            "[indigo]\nendpoint = \"https://api.bücher.example\"\n",
            "indigo.endpoint",
            "international domain name",
        ),
        (
            "[[resolver.source]]\nkind = \"http\"\nurl = \"https://ip.bücher.example\"\n",
            "resolver.source[0].url",
            "international domain name",
        ),
        ("[[firewall]]\ninstances = []\n", "firewall[0].template", "missing"),
        ("[[firewall]]\ntemplate = 1\n", "firewall[0].instances", "missing"),
        (
            "[[firewall]]\ntemplate = 1\ninstances = [2, 2]\n",
            "firewall[0].instances",
            "listed twice",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\nport = \"99999\"\n",
            "firewall[0].port",
            "invalid port",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\nprotocol = \"ICMP\"\n",
            "firewall[0].protocol",
            "not supported",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\nkeep = [\"0.0.0.0/0\"]\n",
            "firewall[0].keep[0]",
            "everyone",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\nkeep = [\"office\"]\n",
            "firewall[0].keep[0]",
            "not an IP address",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\n[[firewall]]\ntemplate = \"1\"\ninstances = []\n",
            "firewall[1].template",
            "listed twice",
        ),
        ("[[probe]]\ninstance = 1\ncheck = \"ping\"\n", "probe[0].check", "unknown check"),
        ("[[probe]]\ninstance = 1\ncheck = \"http\"\n", "probe[0].url", "missing"),
        (
            "[[probe]]\ninstance = 1\ninterval = \"5s\"\ntimeout = \"10s\"\n",
            "probe[0].timeout",
            "longer than the probe interval",
        ),
        ("[[probe]]\ninstance = 1\nfailures = 0\n", "probe[0].failures", "at least 1"),
        ("[[probe]]\ninstance = 1\naddress = \"host\"\n", "probe[0].address", "not an address"),
        ("[typo]\nx = 1\n", "typo", "unknown key"),
        (
            "[daemon]\ninterval = \"18446744073709551615s\"\n",
            "daemon.interval",
            "at most 366 days",
        ),
        (
            "[[probe]]\ninstance = 1\nwindow = \"400d\"\n",
            "probe[0].window",
            "at most",
        ),
        ("resolver = [2, \"1s\"]\n", "resolver", "expected a table"),
        ("daemon = [\"1s\"]\n", "daemon", "expected a table"),
        (
            "firewall = [[1, [2]]]\n[[probe]]\ninstance = 1\n",
            "firewall[0]",
            "expected a table",
        ),
        (
            "[resolver]\nsource = [[\"http\", \"https://y.example\"]]\n",
            "resolver.source[0]",
            "expected a table",
        ),
        (
            "[[firewall]]\ntemplate = 1\ninstances = []\nfamily = \"ipv5\"\n",
            "firewall[0].family",
            "unknown family",
        ),
    ];
    for (body, key, reason) in cases {
        let text = format!(
            "{body}\n[indigo]\napi_key = \"SECRET-K\"\napi_secret = \"SECRET-S\"\n\
             {}",
            if body.contains("[[firewall]]") || body.contains("[[probe]]") {
                ""
            } else {
                "[[firewall]]\ntemplate = 99\ninstances = []\n"
            }
        );
        // `[indigo]` may already be in the body; merge by putting it first in that case.
        let text = if body.contains("[indigo]") {
            format!(
                "{}\napi_key = \"SECRET-K\"\napi_secret = \"SECRET-S\"\n[[firewall]]\ntemplate = 99\ninstances = []\n",
                body.trim_end()
            )
        } else {
            text
        };
        let err = parse(&text).expect_err(body).to_string();
        assert!(err.starts_with("/etc/dynwall/dynwall.toml: "), "{err}");
        assert!(
            err.contains(&format!(" {key}: ")),
            "want key {key} in {err:?}"
        );
        assert!(err.contains(reason), "want {reason:?} in {err:?}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}

#[test]
fn missing_secrets_and_double_secrets_are_errors() {
    let text = "[[firewall]]\ntemplate = 1\ninstances = []\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.contains("indigo.api_key: missing"), "{err}");
    assert!(err.contains("DYNWALL_INDIGO_API_KEY"), "{err}");
    let both = "[indigo]\napi_key = \"a\"\napi_key_file = \"/k\"\napi_secret = \"s\"\n[[firewall]]\ntemplate = 1\ninstances = []\n";
    let err = parse(both).unwrap_err().to_string();
    assert!(err.contains("indigo.api_key: set either"), "{err}");
    let nofile = "[indigo]\napi_key_file = \"/nonexistent/k\"\napi_secret = \"s\"\n[[firewall]]\ntemplate = 1\ninstances = []\n";
    let err = parse(nofile).unwrap_err().to_string();
    assert!(
        err.contains("indigo.api_key_file: cannot read /nonexistent/k"),
        "{err}"
    );
}

#[test]
fn a_config_can_be_loaded_without_reading_its_secrets() {
    let unread_files =
        "[indigo]\napi_key_file = \"/nonexistent/k\"\napi_secret_file = \"/nonexistent/s\"\n\
                        [[firewall]]\ntemplate = 1\ninstances = []\n";
    let path = Path::new("/etc/dynwall/dynwall.toml");
    let skip = WithoutSecrets(&env(&[]));
    let cfg = Config::parse(unread_files, path, &skip).unwrap();
    let indigo = cfg.indigo.as_ref().unwrap();
    assert!(!indigo.api_key.is_read());
    assert_eq!(indigo.api_secret.expose(), "");
    assert_eq!(format!("{:?}", indigo.api_key), "Secret(unread)");
    // Nothing named at all is fine too: `dynwall ip` before the keys exist.
    let none = "[[firewall]]\ntemplate = 1\ninstances = []\n";
    assert!(Config::parse(none, path, &skip).is_ok());
    // Everything else is still validated.
    let both = "[indigo]\napi_key = \"a\"\napi_key_file = \"/k\"\n[[firewall]]\ntemplate = 1\ninstances = []\n";
    let err = Config::parse(both, path, &skip).unwrap_err().to_string();
    assert!(err.contains("indigo.api_key: set either"), "{err}");
    let bad = "[daemon]\ninterval = \"soon\"\n[[firewall]]\ntemplate = 1\ninstances = []\n";
    let err = Config::parse(bad, path, &skip).unwrap_err().to_string();
    assert!(err.contains("daemon.interval"), "{err}");
    // Read as usual, the missing file is an error naming the key.
    let err = parse(unread_files).unwrap_err().to_string();
    assert!(
        err.contains("indigo.api_key_file: cannot read /nonexistent/k"),
        "{err}"
    );
}

#[test]
fn a_config_with_nothing_to_do_is_refused() {
    let err = parse("[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to do"), "{err}");
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let err = parse("[daemon\ninterval = \"1s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/etc/dynwall/dynwall.toml: "), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

/// A config whose `[resolver]` is `resolver` (sources and all).
fn with_resolver(resolver: &str) -> Result<Config, ConfigError> {
    parse(&format!("{resolver}\n{MINIMAL}"))
}

#[test]
fn every_source_kind_parses() {
    let cfg = with_resolver(
        r#"
[resolver]
quorum = 1
[[resolver.source]]
kind = "dns"
server = "208.67.222.222"
name = "myip.opendns.com"
record = "A"
[[resolver.source]]
kind = "dns"
server = "[2620:119:35::35]:5353"
name = "myip.opendns.com"
record = "aaaa"
[[resolver.source]]
kind = "dns"
family = "ipv6"
server = "[2606:4700:4700::1111]:53"
name = "whoami.cloudflare"
record = "TXT"
class = "CH"
[[resolver.source]]
kind = "stun"
server = "stun.l.google.com:19302"
[[resolver.source]]
kind = "stun"
family = "ipv6"
server = "[::1]:3478"
[[resolver.source]]
kind = "upnp"
[[resolver.source]]
kind = "upnp"
url = "http://192.168.1.1:5000/rootDesc.xml"
[[resolver.source]]
kind = "interface"
family = "ipv6"
name = "eth0"
[[resolver.source]]
kind = "command"
command = ["/usr/local/bin/myip", "--v4"]
[[resolver.source]]
kind = "http"
family = "ipv6"
url = "https://api6.ipify.org"
"#,
    )
    .unwrap();
    let s = &cfg.resolver.sources;
    let v4 = Family::Ipv4;
    let v6 = Family::Ipv6;
    assert_eq!(
        s[0],
        SourceConfig {
            family: v4,
            kind: SourceKind::Dns(DnsSource {
                server: "208.67.222.222:53".parse().unwrap(),
                name: "myip.opendns.com".into(),
                record: DnsRecord::A,
                class: DnsClass::In,
            })
        }
    );
    // AAAA implies IPv6.
    assert_eq!(s[1].family, v6);
    assert!(
        matches!(&s[1].kind, SourceKind::Dns(d) if d.record == DnsRecord::Aaaa
        && d.server.port() == 5353)
    );
    assert_eq!(s[2].family, v6);
    assert!(matches!(&s[2].kind, SourceKind::Dns(d) if d.class == DnsClass::Ch));
    assert_eq!(
        s[3],
        SourceConfig {
            family: v4,
            kind: SourceKind::Stun(StunSource {
                server: "stun.l.google.com:19302".into()
            })
        }
    );
    assert_eq!(s[4].family, v6);
    assert_eq!(
        s[5].kind,
        SourceKind::Upnp(UpnpSource::Ssdp(DEFAULT_SSDP.parse().unwrap()))
    );
    assert_eq!(
        s[6].kind,
        SourceKind::Upnp(UpnpSource::Description(
            "http://192.168.1.1:5000/rootDesc.xml".parse().unwrap()
        ))
    );
    assert_eq!(
        s[7],
        SourceConfig {
            family: v6,
            kind: SourceKind::Interface {
                name: "eth0".into()
            }
        }
    );
    assert_eq!(
        s[8].kind,
        SourceKind::Command {
            argv: vec!["/usr/local/bin/myip".into(), "--v4".into()]
        }
    );
    assert_eq!(s[9].family, v6);
    let labels: Vec<String> = s.iter().map(SourceConfig::label).collect();
    assert_eq!(
        labels,
        [
            "dns myip.opendns.com A @208.67.222.222:53",
            "dns myip.opendns.com AAAA @[2620:119:35::35]:5353",
            "dns whoami.cloudflare TXT/CH @[2606:4700:4700::1111]:53",
            "stun stun.l.google.com:19302",
            "stun [::1]:3478",
            "upnp ssdp 239.255.255.250:1900",
            "upnp http://192.168.1.1:5000/rootDesc.xml",
            "interface eth0",
            "command /usr/local/bin/myip --v4",
            "http https://api6.ipify.org/",
        ]
    );
}

#[test]
fn the_defaults_span_operators_protocols_and_families() {
    let d = default_sources().unwrap();
    let of = |f: Family| d.iter().filter(|s| s.family == f).collect::<Vec<_>>();
    let (v4, v6) = (of(Family::Ipv4), of(Family::Ipv6));
    assert_eq!((v4.len(), v6.len()), (4, 3));
    for set in [&v4, &v6] {
        let http = set
            .iter()
            .filter(|s| matches!(s.kind, SourceKind::Http { .. }))
            .count();
        let dns = set
            .iter()
            .filter(|s| matches!(s.kind, SourceKind::Dns(_)))
            .count();
        assert!(http >= 1 && dns >= 1, "two protocols: {set:?}");
    }
    let labels: Vec<String> = d.iter().map(SourceConfig::label).collect();
    assert_eq!(
        labels,
        [
            "http https://api.ipify.org/",
            "http https://checkip.amazonaws.com/",
            "dns myip.opendns.com A @208.67.222.222:53",
            "dns whoami.cloudflare TXT/CH @1.1.1.1:53",
            "http https://api6.ipify.org/",
            "dns myip.opendns.com AAAA @[2620:119:35::35]:53",
            "dns whoami.cloudflare TXT/CH @[2606:4700:4700::1111]:53",
        ]
    );
    // An empty source list means the defaults too.
    let cfg = with_resolver("[resolver]\ntimeout = \"2s\"\n").unwrap();
    assert_eq!(cfg.resolver.sources, d);
    assert_eq!(cfg.resolver.timeout, Duration::from_secs(2));
}

#[test]
fn a_quorum_binds_only_the_families_a_firewall_tracks() {
    let two_v4_one_v6 = r#"
[[resolver.source]]
kind = "http"
url = "https://a.example"
[[resolver.source]]
kind = "http"
url = "https://b.example"
[[resolver.source]]
kind = "http"
family = "ipv6"
url = "https://c.example"
"#;
    let config = |quorum: u32, family: &str| {
        parse(&format!(
            "[resolver]\nquorum = {quorum}\n{two_v4_one_v6}\n[indigo]\napi_key = \"k\"\n\
             api_secret = \"s\"\n[[firewall]]\ntemplate = 1\ninstances = []\nfamily = \"{family}\"\n"
        ))
    };
    // The README's own example: quorum 2, one IPv6 source, nothing tracks IPv6. Fine.
    let cfg = config(2, "ipv4").unwrap();
    assert_eq!(cfg.resolver.quorum, Some(2));
    assert_eq!(cfg.resolver.sources_of(Family::Ipv6).count(), 1);
    // Tracking IPv6 with one IPv6 source and quorum 2 can never settle.
    let err = config(2, "both").unwrap_err().to_string();
    assert_eq!(
        err,
        "/etc/dynwall/dynwall.toml: resolver.quorum: 2 IPv6 sources must agree, but only 1 IPv6 \
         source is configured, and firewall[0] tracks IPv6: add IPv6 sources or lower the quorum"
    );
    let err = config(3, "ipv4").unwrap_err().to_string();
    assert!(
        err.contains("resolver.quorum: 3 IPv4 sources must agree, but only 2 IPv4 sources are"),
        "{err}"
    );
    // Without any firewall, the probes need IPv4.
    let probes_only = parse(&format!(
        "[resolver]\nquorum = 3\n{two_v4_one_v6}\n[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
         [[probe]]\ninstance = 1\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        probes_only.contains("and the probes need an IPv4 address to trust our own connectivity"),
        "{probes_only}"
    );
    let err = with_resolver("[resolver]\nquorum = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("resolver.quorum: must be at least 1"), "{err}");
}

#[test]
fn a_tracked_family_needs_a_source() {
    let only_v4 = "[[resolver.source]]\nkind = \"http\"\nurl = \"https://a.example\"\n";
    let text = format!(
        "[resolver]\n{only_v4}\n[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
         [[firewall]]\ntemplate = 1\ninstances = []\n[[firewall]]\ntemplate = 2\n\
         instances = []\nfamily = \"ipv6\"\n"
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "/etc/dynwall/dynwall.toml: firewall[1].family: firewall[1] tracks IPv6, but no IPv6 \
             source is configured"
        ),
        "{err}"
    );
    // The built-in set has IPv6 sources.
    let builtin = "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n[[firewall]]\ntemplate = 1\n\
                   instances = []\nfamily = \"both\"\n";
    assert!(parse(builtin).is_ok());
}

/// Each invalid source must fail naming `resolver.source[N].key` and the reason.
#[test]
fn invalid_sources_name_the_key_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("kind = \"dns\"\nname = \"x\"\nrecord = \"A\"", "server", "missing"),
        ("kind = \"dns\"\nserver = \"1.1.1.1\"\nrecord = \"A\"", "name", "missing"),
        ("kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"x\"", "record", "missing"),
        (
            "kind = \"dns\"\nserver = \"resolver1.opendns.com\"\nname = \"x\"\nrecord = \"A\"",
            "server",
            "not an IP address",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1:0\"\nname = \"x\"\nrecord = \"A\"",
            "server",
            "cannot be asked",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"x\"\nrecord = \"MX\"",
            "record",
            "not supported",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"x\"\nrecord = \"TXT\"\nclass = \"HS\"",
            "class",
            "not supported",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"a..b\"\nrecord = \"A\"",
            "name",
            "not a DNS name",
        ),
        (
            "kind = \"dns\"\nfamily = \"ipv6\"\nserver = \"[::1]:53\"\nname = \"x\"\nrecord = \"A\"",
            "family",
            "an A record holds an IPv4 address",
        ),
        (
            "kind = \"dns\"\nfamily = \"ipv4\"\nserver = \"1.1.1.1\"\nname = \"x\"\nrecord = \"AAAA\"",
            "family",
            "an AAAA record holds an IPv6 address",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"x\"\nrecord = \"AAAA\"",
            "server",
            "1.1.1.1 is an IPv4 address, but the source's family is ipv6",
        ),
        (
            "kind = \"dns\"\nserver = \"[2606:4700:4700::1111]:53\"\nname = \"x\"\nrecord = \"TXT\"",
            "server",
            "is an IPv6 address, but the source's family is ipv4",
        ),
        (
            "kind = \"dns\"\nserver = \"1.1.1.1\"\nname = \"x\"\nrecord = \"A\"\nurl = \"https://x\"",
            "url",
            "not a key of kind = \"dns\" sources (they take server, name, record, class, and family)",
        ),
        ("kind = \"stun\"", "server", "missing"),
        ("kind = \"stun\"\nserver = \"stun.example\"", "server", "not host:port"),
        ("kind = \"stun\"\nserver = \"[::1\"", "server", "not host:port"),
        (
            "kind = \"stun\"\nfamily = \"ipv6\"\nserver = \"127.0.0.1:3478\"",
            "server",
            "is an IPv4 address",
        ),
        ("kind = \"stun\"\nserver = \"s:1\"\nrecord = \"A\"", "record", "not a key of kind = \"stun\""),
        ("kind = \"upnp\"\nfamily = \"ipv6\"", "family", "only its IPv4 WAN address"),
        (
            "kind = \"upnp\"\nurl = \"http://192.168.1.1/d.xml\"\nssdp = \"239.255.255.250:1900\"",
            "ssdp",
            "not both",
        ),
        ("kind = \"upnp\"\nssdp = \"[ff02::c]:1900\"", "ssdp", "not an IPv4 address"),
        ("kind = \"upnp\"\nurl = \"http://router.example/d.xml\"", "url", "plain http"),
        ("kind = \"upnp\"\nname = \"eth0\"", "name", "not a key of kind = \"upnp\""),
        ("kind = \"interface\"", "name", "missing"),
        ("kind = \"interface\"\nname = \"\"", "name", "not an interface name"),
        ("kind = \"interface\"\nname = \"eth0\"\nserver = \"x:1\"", "server", "not a key"),
        ("kind = \"command\"", "command", "missing"),
        ("kind = \"command\"\ncommand = []", "command", "must name a program"),
        ("kind = \"command\"\ncommand = [\"myip\"]", "command", "must be an absolute path"),
        ("kind = \"command\"\ncommand = \"/bin/myip\"", "command", "invalid type"),
        ("kind = \"http\"\nurl = \"https://x.example\"\nfield = \"ip\"", "field", "not a key of kind = \"http\""),
        ("kind = \"http\"\nurl = \"https://x.example\"\nfamily = \"ip4\"", "family", "not a family"),
        (
            "kind = \"http\"\nfamily = \"ipv6\"\nurl = \"http://192.168.1.1/ip\"",
            "url",
            "192.168.1.1 is an IPv4 address, but the source's family is ipv6",
        ),
        ("kind = \"http-json\"\nurl = \"https://x.example\"\nfield = \"\"", "field", "must not be empty"),
    ];
    for (source, key, reason) in cases {
        let text = format!("[resolver]\nquorum = 1\n[[resolver.source]]\n{source}\n");
        let err = with_resolver(&text).expect_err(source).to_string();
        let want = format!(" resolver.source[0].{key}: ");
        assert!(err.contains(&want), "want {want:?} in {err:?}");
        assert!(err.contains(reason), "want {reason:?} in {err:?}");
    }
}

#[test]
fn an_international_host_name_is_taken_in_its_ascii_form() {
    let cfg = with_resolver(
        "[[resolver.source]]\nkind = \"http\"\nurl = \"https://ip.xn--bcher-kva.example/\"\n",
    )
    .expect("the xn-- form parses");
    assert!(
        cfg.resolver.sources.iter().any(|s| matches!(
            &s.kind,
            SourceKind::Http { url } if url.host_str() == Some("ip.xn--bcher-kva.example")
        )),
        "{:?}",
        cfg.resolver.sources
    );
}
