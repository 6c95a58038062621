use std::collections::HashMap;

use super::*;

const BASE: &str = "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
                    [[firewall]]\ntemplate = 1\ninstances = []\n";
const TOPIC: &str = "dynwall-Xq7r9Tz2";
const PING: &str = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_in(dir: &Path, extra: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    Config::parse(&format!("{BASE}{extra}"), &dir.join("dynwall.toml"), env)
}

fn parse(extra: &str) -> Result<Config, ConfigError> {
    parse_in(Path::new("/etc/dynwall"), extra, &env(&[]))
}

#[test]
fn three_notifiers_with_their_defaults() {
    let cfg = parse(&format!(
        r#"
[[notify]]
kind = "webhook"
url = "https://hooks.example.net/dynwall?key=HOOK-SECRET"

[[notify]]
kind = "ntfy"
url = "https://ntfy.sh/{TOPIC}"
events = ["gave_up", "failing"]
priority = "high"
tags = ["house", "dynwall"]
token = "tk_NTFY-SECRET"
timeout = "3s"

[[notify]]
kind = "healthchecks"
url = "https://hc-ping.com/{PING}"
"#
    ))
    .unwrap();
    assert_eq!(cfg.notify.len(), 3);
    let [hook, ntfy, hc] = &cfg.notify[..] else {
        panic!()
    };
    assert_eq!(
        hook.label(),
        "notify[0] webhook https://hooks.example.net/***"
    );
    assert_eq!(hook.timeout, DEFAULT_NOTIFY_TIMEOUT);
    assert!(EventKind::ALL.iter().all(|e| hook.wants(*e)));
    let NotifyKind::Webhook { token, .. } = &hook.kind else {
        panic!()
    };
    assert!(token.is_none());

    assert_eq!(ntfy.index, 1);
    assert_eq!(ntfy.timeout, Duration::from_secs(3));
    assert!(ntfy.wants(EventKind::GaveUp) && ntfy.wants(EventKind::Failing));
    assert!(!ntfy.wants(EventKind::IpChanged));
    let NotifyKind::Ntfy {
        token,
        priority,
        tags,
        ..
    } = &ntfy.kind
    else {
        panic!()
    };
    assert_eq!(token.as_ref().unwrap().expose(), "tk_NTFY-SECRET");
    assert_eq!(*priority, Some(4));
    assert_eq!(tags, &["house", "dynwall"]);
    assert_eq!(
        ntfy.url.expose().unwrap().as_str(),
        format!("https://ntfy.sh/{TOPIC}")
    );

    assert!(EventKind::ALL.iter().all(|e| !hc.wants(*e)));
    let NotifyKind::Healthchecks { period } = hc.kind else {
        panic!()
    };
    assert_eq!(period, DEFAULT_HEALTHCHECKS_PERIOD);

    // Neither the URLs' secrets nor the token show in Debug output.
    let debug = format!("{cfg:?}");
    for secret in [TOPIC, PING, "HOOK-SECRET", "NTFY-SECRET"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn plain_http_is_for_local_hosts_only() {
    for ok in [
        "http://127.0.0.1:8080/topic",
        "http://192.168.1.20/topic",
        "http://ntfy.lan/topic",
        "http://[::1]/topic",
    ] {
        let cfg = parse(&format!("[[notify]]\nkind = \"ntfy\"\nurl = \"{ok}\"\n")).unwrap();
        assert_eq!(cfg.notify[0].url.expose().unwrap().as_str(), ok);
    }
    let err = parse(&format!(
        "[[notify]]\nkind = \"ntfy\"\nurl = \"http://ntfy.sh/{TOPIC}\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("notify[0].url: http://ntfy.sh/*** uses plain http"),
        "{err}"
    );
    assert!(!err.contains(TOPIC), "{err}");
}

#[test]
fn invalid_notifiers_name_the_key_and_never_the_secret() {
    let cases: &[(&str, &str, &str)] = &[
        ("kind = \"slack\"\nurl = \"https://x.example/h\"", "notify[0].kind", "unknown notifier kind \"slack\" (expected one of \"webhook\", \"ntfy\", \"healthchecks\")"),
        ("kind = \"ntfy\"", "notify[0].url", "missing: set url, or url_file"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\ntopic = \"x\"", "notify[0].topic", "unknown key"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\nperiod = \"1m\"", "notify[0].period", "not a key of kind = \"ntfy\" notifiers"),
        ("kind = \"webhook\"\nurl = \"https://x.example/SECRET\"\ntags = [\"a\"]", "notify[0].tags", "not a key of kind = \"webhook\""),
        ("kind = \"healthchecks\"\nurl = \"https://hc-ping.com/SECRET\"\nevents = [\"failing\"]", "notify[0].events", "pinged every cycle"),
        ("kind = \"ntfy\"\nurl = \"ntfy.sh/SECRET\"", "notify[0].url", "not a URL"),
        ("kind = \"ntfy\"\nurl = \"ftp://ntfy.sh/SECRET\"", "notify[0].url", "unsupported scheme \"ftp\""),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/\"", "notify[0].url", "names no topic"),
        ("kind = \"healthchecks\"\nurl = \"https://hc-ping.com\"", "notify[0].url", "names no check"),
        ("kind = \"healthchecks\"\nurl = \"https://hc-ping.com/SECRET/fail\"", "notify[0].url", "without /fail"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\nevents = []", "notify[0].events", "is empty"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\nevents = [\"ip_change\"]", "notify[0].events", "\"ip_change\" is not an event (expected \"ip_changed\", \"firewall_updated\", \"remediation\", \"gave_up\", \"failing\")"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\npriority = 7", "notify[0].priority", "not a ntfy priority"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\npriority = \"loud\"", "notify[0].priority", "not a ntfy priority"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\ntags = [\"a,b\"]", "notify[0].tags", "without commas"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\ntimeout = \"0s\"", "notify[0].timeout", "greater than zero"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\nurl_file = \"/x\"", "notify[0].url", "set either notify[0].url or notify[0].url_file, not both"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\ntoken = \"SECRET\"\ntoken_file = \"/x\"", "notify[0].token", "not both"),
        ("kind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET\"\ntoken = \"SECRET\\u0007\"", "notify[0].token", "cannot carry"),
    ];
    for (body, key, reason) in cases {
        let err = parse(&format!("[[notify]]\n{body}\n")).expect_err(body);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("/etc/dynwall/dynwall.toml: {key}: ")),
            "want key {key} in {text:?}"
        );
        assert!(text.contains(reason), "want {reason:?} in {text:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(
            crate::exit::AppError::from(err).code(),
            crate::exit::Code::Config
        );
    }
    // The second table is named by its own index.
    let err = parse(
        "[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/a\"\n\
         [[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/b\"\npriority = 0\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(" notify[1].priority: "), "{err}");
}

#[test]
fn priorities_by_number_or_name() {
    for (given, want) in [
        ("1", 1),
        ("5", 5),
        ("\"min\"", 1),
        ("\"low\"", 2),
        ("\"default\"", 3),
        ("\"HIGH\"", 4),
        ("\"urgent\"", 5),
        ("\"max\"", 5),
    ] {
        let cfg = parse(&format!(
            "[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/t\"\npriority = {given}\n"
        ))
        .unwrap();
        let NotifyKind::Ntfy { priority, .. } = cfg.notify[0].kind else {
            panic!()
        };
        assert_eq!(priority, Some(want), "{given}");
    }
}

#[test]
fn url_and_token_from_files_or_systemd_credentials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hc_url"),
        format!("https://hc-ping.com/{PING}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ntfy_token"), "  tk_from_file\n").unwrap();
    let body = "[[notify]]\nkind = \"healthchecks\"\nurl_file = \"hc_url\"\nperiod = \"10m\"\n\
                [[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/t\"\n\
                token_file = \"/etc/dynwall/ntfy_token\"\n";
    // Relative to the config's directory; the token file does not exist at that absolute path,
    // so only the credential can supply it.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("ntfy_token"), "tk_from_credential\n").unwrap();
    let cfg = parse_in(
        dir.path(),
        body,
        &env(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(
        cfg.notify[0].url.expose().unwrap().as_str(),
        format!("https://hc-ping.com/{PING}")
    );
    assert_eq!(
        cfg.notify[0].kind.name(),
        "healthchecks",
        "{:?}",
        cfg.notify[0]
    );
    let NotifyKind::Healthchecks { period } = cfg.notify[0].kind else {
        panic!()
    };
    assert_eq!(period, Duration::from_secs(600));
    let NotifyKind::Ntfy { token, .. } = &cfg.notify[1].kind else {
        panic!()
    };
    assert_eq!(token.as_ref().unwrap().expose(), "tk_from_credential");

    // Without the credential the file is read (relative paths from the config's directory).
    let body = body.replace("/etc/dynwall/ntfy_token", "ntfy_token");
    let cfg = parse_in(dir.path(), &body, &env(&[])).unwrap();
    let NotifyKind::Ntfy { token, .. } = &cfg.notify[1].kind else {
        panic!()
    };
    assert_eq!(token.as_ref().unwrap().expose(), "tk_from_file");

    // A URL file that holds no valid URL is named, its content is not quoted.
    std::fs::write(dir.path().join("hc_url"), "hc-ping.com/SECRET\n").unwrap();
    let err = parse_in(dir.path(), &body, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("notify[0].url_file: not a URL"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    std::fs::remove_file(dir.path().join("hc_url")).unwrap();
    let err = parse_in(dir.path(), &body, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("notify[0].url_file: cannot read"), "{err}");
}

#[test]
fn commands_that_send_nothing_read_no_notifier_secret() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[[notify]]\nkind = \"healthchecks\"\nurl_file = \"missing_url\"\n\
                [[notify]]\nkind = \"webhook\"\nurl = \"https://x.example/h\"\n\
                token_file = \"missing_token\"\n";
    let text = format!("{BASE}{body}");
    let cfg = Config::parse(
        &text,
        &dir.path().join("dynwall.toml"),
        &WithoutSecrets(&env(&[])),
    )
    .unwrap();
    assert!(cfg.notify[0].url.expose().is_none());
    let NotifyKind::Webhook { token, .. } = &cfg.notify[1].kind else {
        panic!()
    };
    assert!(!token.as_ref().unwrap().is_read());
}
