use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dirs_of(files: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in files {
        let d = f.parent().unwrap().display().to_string();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// A search over `dirs` only (no overrides), for tests that must not see the machine's files.
fn search(dirs: &[&Path]) -> SearchPath {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    SearchPath::in_dirs(&dirs, None, None)
}

const HORIZON: &str = "\
# As Horizon writes it (the password is not in it).
clouds:
  openstack:
    auth:
      auth_url: https://keystone.example:5000
      username: \"owner\"
      project_id: 9f2b
      project_name: \"home\"
      user_domain_name: \"Default\"
    region_name: \"RegionOne\"
    interface: \"public\"
    identity_api_version: 3
  other:
    auth:
      auth_url: https://other.example/v3
";

#[test]
fn the_search_path_is_openstacksdks() {
    let s = SearchPath::standard(&env(&[("HOME", "/home/u")]), Some(Path::new("/srv")));
    assert_eq!(
        dirs_of(&s.clouds),
        [
            "/srv",
            "/home/u/.config/openstack",
            "/etc/xdg/openstack",
            "/etc/openstack"
        ]
    );
    assert_eq!(
        s.clouds[..3],
        [
            PathBuf::from("/srv/clouds.yaml"),
            PathBuf::from("/srv/clouds.yml"),
            PathBuf::from("/srv/clouds.json")
        ]
    );
    assert_eq!(s.secure[0], PathBuf::from("/srv/secure.yaml"));
    assert_eq!(s.secure.len(), s.clouds.len());

    let s = SearchPath::standard(
        &env(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("XDG_CONFIG_DIRS", "/a:/b"),
            ("OS_CLIENT_CONFIG_FILE", "/run/my-clouds.yaml"),
            ("OS_CLIENT_SECURE_FILE", "/run/my-secure.yaml"),
        ]),
        None,
    );
    assert_eq!(s.clouds[0], PathBuf::from("/run/my-clouds.yaml"));
    assert_eq!(s.secure[0], PathBuf::from("/run/my-secure.yaml"));
    assert_eq!(
        dirs_of(&s.clouds[1..]),
        [
            "/cfg/openstack",
            "/home/u/.config/openstack",
            "/a/openstack",
            "/b/openstack",
            "/etc/openstack"
        ]
    );
    // A snap's $HOME is not the user's; openstacksdk reads the real one.
    let s = SearchPath::standard(
        &env(&[("HOME", "/home/u/snap/x/1"), ("SNAP_REAL_HOME", "/home/u")]),
        None,
    );
    assert_eq!(
        dirs_of(&s.clouds)[..2],
        [
            "/home/u/snap/x/1/.config/openstack",
            "/home/u/.config/openstack"
        ]
    );
    // No home at all (a system service): only the system directories.
    let s = SearchPath::standard(&env(&[]), None);
    assert_eq!(dirs_of(&s.clouds), ["/etc/xdg/openstack", "/etc/openstack"]);
}

#[test]
fn the_first_file_found_wins_and_the_rest_are_not_merged() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    std::fs::write(
        first.path().join("clouds.json"),
        r#"{"clouds": {"c": {"auth": {"auth_url": "https://json.example/v3"}}}}"#,
    )
    .unwrap();
    std::fs::write(
        second.path().join("clouds.yaml"),
        "clouds:\n  c:\n    auth:\n      auth_url: https://yaml.example/v3\n      username: u\n",
    )
    .unwrap();
    let layer = from_clouds_yaml("c", &search(&[first.path(), second.path()])).unwrap();
    assert_eq!(layer.get("auth_url"), Some("https://json.example/v3"));
    assert_eq!(layer.get("username"), None);
    assert_eq!(
        layer.source,
        ConnectionSource::CloudsYaml {
            cloud: "c".into(),
            file: first.path().join("clouds.json"),
            secure: None
        }
    );
    // Within one directory, .yaml comes before .yml.
    std::fs::write(
        first.path().join("clouds.yml"),
        "clouds:\n  c: {auth: {auth_url: https://yml.example}}\n",
    )
    .unwrap();
    std::fs::write(
        first.path().join("clouds.yaml"),
        "clouds:\n  c: {auth: {auth_url: https://yaml1.example}}\n",
    )
    .unwrap();
    let layer = from_clouds_yaml("c", &search(&[first.path(), second.path()])).unwrap();
    assert_eq!(layer.get("auth_url"), Some("https://yaml1.example"));
}

#[test]
fn a_horizon_entry_flattens_and_secure_yaml_adds_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), HORIZON).unwrap();
    std::fs::write(
        dir.path().join("secure.yaml"),
        "clouds:\n  openstack:\n    auth:\n      password: s3cret\n    region_name: RegionTwo\n",
    )
    .unwrap();
    let layer = from_clouds_yaml("openstack", &search(&[dir.path()])).unwrap();
    assert_eq!(layer.get("auth_url"), Some("https://keystone.example:5000"));
    assert_eq!(layer.get("username"), Some("owner"));
    assert_eq!(layer.get("password"), Some("s3cret"));
    assert_eq!(layer.get("project_id"), Some("9f2b"));
    assert_eq!(layer.get("project_name"), Some("home"));
    assert_eq!(layer.get("user_domain_name"), Some("Default"));
    assert_eq!(layer.get("interface"), Some("public"));
    assert_eq!(layer.get("identity_api_version"), Some("3"));
    // secure.yaml is merged over clouds.yaml, key by key.
    assert_eq!(layer.regions, ["RegionTwo"]);
    match &layer.source {
        ConnectionSource::CloudsYaml { secure, .. } => {
            assert_eq!(
                secure.as_deref(),
                Some(dir.path().join("secure.yaml").as_path())
            )
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{layer:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("owner"),
        "{shown}"
    );
}

#[test]
fn a_cloud_only_in_secure_yaml_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), HORIZON).unwrap();
    std::fs::write(
        dir.path().join("secure.yaml"),
        "clouds:\n  hidden:\n    auth:\n      auth_url: https://h.example/v3\n",
    )
    .unwrap();
    let layer = from_clouds_yaml("hidden", &search(&[dir.path()])).unwrap();
    assert_eq!(layer.get("auth_url"), Some("https://h.example/v3"));
}

#[test]
fn openstacksdk_aliases_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clouds.yaml"),
        "\
clouds:
  c:
    auth-type: v3password
    project-name: from-top
    domain_name: Shared
    endpoint_type: internalURL
    regions:
      - name: North
        values: {}
      - South
    auth:
      auth_url: https://inside.example/v3
      project_name: from-auth
      user-domain-id: own
    auth_url: https://outside.example/v3
    profile: vexxhost
",
    )
    .unwrap();
    let layer = from_clouds_yaml("c", &search(&[dir.path()])).unwrap();
    // Inside `auth` wins for the plugin's own options, outside wins for the project.
    assert_eq!(layer.get("auth_url"), Some("https://inside.example/v3"));
    assert_eq!(layer.get("project_name"), Some("from-top"));
    assert_eq!(layer.get("auth_type"), Some("v3password"));
    assert_eq!(layer.get("interface"), Some("internalURL"));
    // domain_name stands for the domains not given otherwise.
    assert_eq!(layer.get("user_domain_id"), Some("own"));
    assert_eq!(layer.get("user_domain_name"), None);
    assert_eq!(layer.get("project_domain_name"), Some("Shared"));
    assert_eq!(layer.regions, ["North", "South"]);
    assert_eq!(layer.profile.as_deref(), Some("vexxhost"));

    std::fs::write(
        dir.path().join("clouds.yaml"),
        "clouds:\n  c:\n    auth_plugin: v2password\n    region_name: 'East,West'\n",
    )
    .unwrap();
    let layer = from_clouds_yaml("c", &search(&[dir.path()])).unwrap();
    assert_eq!(layer.get("auth_type"), Some("v2password"));
    assert_eq!(layer.regions, ["East", "West"]);
}

#[test]
fn what_cannot_be_found_or_read_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = from_clouds_yaml("c", &search(&[dir.path()])).unwrap_err();
    assert!(
        err.starts_with("no clouds.yaml found; looked for "),
        "{err}"
    );
    assert!(
        err.contains(&dir.path().join("clouds.yml").display().to_string()),
        "{err}"
    );

    std::fs::write(dir.path().join("clouds.yaml"), HORIZON).unwrap();
    let err = from_clouds_yaml("mycloud", &search(&[dir.path()])).unwrap_err();
    assert_eq!(
        err,
        format!(
            "{} has no cloud \"mycloud\" (it has: openstack, other)",
            dir.path().join("clouds.yaml").display()
        )
    );

    std::fs::write(dir.path().join("clouds.yaml"), "clouds:\n  c: [\n").unwrap();
    let err = from_clouds_yaml("c", &search(&[dir.path()])).unwrap_err();
    assert!(
        err.starts_with(&dir.path().join("clouds.yaml").display().to_string()),
        "{err}"
    );
    assert!(err.contains("line"), "{err}");

    std::fs::write(dir.path().join("clouds.yaml"), "- a\n- b\n").unwrap();
    let err = from_clouds_yaml("c", &search(&[dir.path()])).unwrap_err();
    assert!(err.ends_with("not a mapping"), "{err}");

    std::fs::write(dir.path().join("clouds.yaml"), "clouds:\n  c: just text\n").unwrap();
    let err = from_clouds_yaml("c", &search(&[dir.path()])).unwrap_err();
    assert!(err.ends_with("cloud \"c\": not a mapping"), "{err}");
}

#[test]
fn an_openrc_environment_is_a_layer() {
    let layer = from_environment(&env(&[
        ("OS_AUTH_URL", "https://keystone.example:5000/v3"),
        ("OS_PROJECT_ID", "9f2b"),
        ("OS_PROJECT_NAME", "home"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_ID", "default"),
        ("OS_USERNAME", "owner"),
        ("OS_PASSWORD", "s3cret"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_ENDPOINT_TYPE", "internalURL"),
        ("OS_IDENTITY_API_VERSION", "3"),
        ("OS_TEST_TIMEOUT", "60"),
    ]))
    .unwrap();
    assert_eq!(layer.source, ConnectionSource::Environment);
    assert_eq!(
        layer.get("auth_url"),
        Some("https://keystone.example:5000/v3")
    );
    assert_eq!(layer.get("password"), Some("s3cret"));
    assert_eq!(layer.get("project_domain_id"), Some("default"));
    assert_eq!(layer.get("interface"), Some("internalURL"));
    assert_eq!(layer.regions, ["RegionOne"]);
    assert!(!format!("{layer:?}").contains("s3cret"));
    // Selectors alone connect nothing.
    assert_eq!(
        from_environment(&env(&[("OS_REGION_NAME", "R"), ("OS_CLOUD", "c")])),
        None
    );
}
