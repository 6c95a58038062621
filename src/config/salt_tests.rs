//! `[salt]` and the probes' `salt_*` keys.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const JOB: &str = "5c5cc410-4f9f-11e6-88bc-080027a7289c";
const TARGET: &str = "89db0f82-4f9f-11e6-88bc-080027a7289c";

fn text(salt: &str, probe: &str) -> String {
    format!(
        "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\n{salt}\n\
         [[probe]]\ninstance = 616516\n{probe}\n"
    )
}

fn parse_env(t: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    Config::parse(t, Path::new("/etc/dynwall/dynwall.toml"), env)
}

fn parse(t: &str) -> Result<Config, ConfigError> {
    parse_env(t, &HashMap::new())
}

/// The error's key and reason.
fn invalid(t: &str) -> (String, String) {
    match parse(t) {
        Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

const CLOUD: &str = "[salt]\nserver = \"https://ssc-gateway.mgmt.cloud.vmware.com\"\n\
                     csp_url = \"https://console.cloud.vmware.com\"\napi_token = \"tok\"\n";

#[test]
fn a_probe_names_a_saved_job_and_target_with_a_default_timeout() {
    let probe = format!(
        "salt_job = \"{JOB}\"\nsalt_target = \"{}\"\n",
        TARGET.to_uppercase()
    );
    let cfg = parse(&text(CLOUD, &probe)).unwrap();
    let step = cfg.probes[0].salt.clone().unwrap();
    assert_eq!(step.job, JOB);
    assert_eq!(step.target, TARGET, "uuids are compared lower-case");
    assert_eq!(step.timeout, Duration::from_secs(90));
    let salt = cfg.salt.unwrap();
    assert_eq!(
        salt.server.as_str(),
        "https://ssc-gateway.mgmt.cloud.vmware.com/"
    );
    match salt.auth {
        SaltAuth::Cloud { csp_url, api_token } => {
            assert_eq!(csp_url.host_str(), Some("console.cloud.vmware.com"));
            assert_eq!(api_token.expose(), "tok");
        }
        other => panic!("{other:?}"),
    }
    let probe =
        format!("salt_job = \"{JOB}\"\nsalt_target = \"{TARGET}\"\nsalt_timeout = \"30s\"\n");
    let cfg = parse(&text(CLOUD, &probe)).unwrap();
    assert_eq!(
        cfg.probes[0].salt.as_ref().unwrap().timeout,
        Duration::from_secs(30)
    );
    assert!(parse(&text(CLOUD, "")).unwrap().probes[0].salt.is_none());
}

#[test]
fn a_salt_job_needs_a_salt_table_a_target_and_uuids() {
    let probe = format!("salt_job = \"{JOB}\"\nsalt_target = \"{TARGET}\"\n");
    let (key, reason) = invalid(&text("", &probe));
    assert_eq!(key, "probe[0].salt_job");
    assert!(reason.contains("[salt]"), "{reason}");
    let (key, _) = invalid(&text(CLOUD, &format!("salt_job = \"{JOB}\"\n")));
    assert_eq!(key, "probe[0].salt_target");
    let (key, _) = invalid(&text(CLOUD, &format!("salt_target = \"{TARGET}\"\n")));
    assert_eq!(key, "probe[0].salt_job");
    let (key, reason) = invalid(&text(
        CLOUD,
        &format!("salt_job = \"service.restart sshd\"\nsalt_target = \"{TARGET}\"\n"),
    ));
    assert_eq!(key, "probe[0].salt_job");
    assert!(
        reason.contains("not a uuid") && reason.contains("saved jobs only"),
        "{reason}"
    );
    let (key, _) = invalid(&text(CLOUD, "salt_timeout = \"30s\"\n"));
    assert_eq!(key, "probe[0].salt_timeout");
    let (key, _) = invalid(&text(
        CLOUD,
        &format!("salt_job = \"{JOB}\"\nsalt_target = \"{TARGET}\"\nsalt_command = \"x\"\n"),
    ));
    assert_eq!(key, "probe[0].salt_command");
}

#[test]
fn the_salt_table_takes_one_kind_of_credentials() {
    let (key, reason) = invalid(&text("[salt]\nserver = \"https://salt.example.net\"\n", ""));
    assert_eq!(key, "salt");
    assert!(reason.contains("no credentials"), "{reason}");
    let (key, _) = invalid(&text(&format!("{CLOUD}username = \"root\"\n"), ""));
    assert_eq!(key, "salt.username");
    let (key, _) = invalid(&text(
        "[salt]\ncsp_url = \"https://c.example.net\"\napi_token = \"t\"\n",
        "",
    ));
    assert_eq!(key, "salt.server");
    let (key, reason) = invalid(&text(
        "[salt]\nserver = \"http://salt.example.net\"\nusername = \"root\"\npassword = \"p\"\n",
        "",
    ));
    assert_eq!(key, "salt.server");
    assert!(reason.contains("plain http"), "{reason}");
    let (key, _) = invalid(&text(&format!("{CLOUD}api_token_file = \"/x\"\n"), ""));
    assert_eq!(key, "salt.api_token");
    let (key, _) = invalid(&text(&format!("{CLOUD}tiemout = \"5s\"\n"), ""));
    assert_eq!(key, "salt.tiemout");
    let cfg = parse(&text(
        "[salt]\nserver = \"http://127.0.0.1:8000\"\nusername = \"root\"\npassword = \"p\"\n",
        "",
    ))
    .unwrap();
    assert_eq!(
        cfg.salt.unwrap().auth,
        SaltAuth::OnPrem {
            username: "root".into(),
            password: Secret::new("p"),
            config_name: "internal".into()
        }
    );
}

#[test]
fn the_api_token_comes_from_a_file_or_a_systemd_credential_and_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("salt_api_token"), "from-credential\n").unwrap();
    let t = text(
        "[salt]\nserver = \"https://s.example.net\"\ncsp_url = \"https://c.example.net\"\n\
         api_token_file = \"/nonexistent/salt_api_token\"\n",
        "",
    );
    let env: HashMap<String, String> = [(
        "CREDENTIALS_DIRECTORY".to_string(),
        dir.path().display().to_string(),
    )]
    .into();
    let cfg = parse_env(&t, &env).unwrap();
    let salt = cfg.salt.unwrap();
    let SaltAuth::Cloud { api_token, .. } = &salt.auth else {
        panic!("cloud");
    };
    assert_eq!(api_token.expose(), "from-credential");
    assert!(!format!("{salt:?}").contains("from-credential"));
    let (key, reason) = invalid(&t);
    assert_eq!(key, "salt.api_token_file");
    assert!(reason.contains("cannot read"), "{reason}");
}
