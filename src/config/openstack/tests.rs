use std::collections::HashMap;
use std::path::PathBuf;

use super::*;
use crate::provider::openstack::keystone::IdentityVersion;

/// A config directory with its own clouds.yaml and secure.yaml, found first on the search path.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let d = Dir {
            dir: tempfile::tempdir().unwrap(),
        };
        d.write("clouds.yaml", "clouds: {}\n");
        d.write("secure.yaml", "");
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert(
            "OS_CLIENT_CONFIG_FILE".into(),
            self.path("clouds.yaml").display().to_string(),
        );
        env.insert(
            "OS_CLIENT_SECURE_FILE".into(),
            self.path("secure.yaml").display().to_string(),
        );
        env
    }

    fn parse(&self, tables: &str, extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let text = format!("{tables}\n[[probe]]\ninstance = \"vps1\"\n");
        Config::parse(&text, &self.path("dynwall.toml"), &self.env(extra))
    }

    fn cloud(&self, tables: &str, extra: &[(&str, &str)]) -> OpenStackConfig {
        let cfg = self.parse(tables, extra).unwrap();
        assert_eq!(cfg.openstack.len(), 1);
        cfg.openstack.into_values().next().unwrap()
    }

    /// The dotted key and the reason of a config error, checking it names the file.
    fn error(&self, tables: &str, extra: &[(&str, &str)]) -> (String, String) {
        match self.parse(tables, extra).unwrap_err() {
            ConfigError::Invalid { path, key, reason } => {
                assert_eq!(path, self.path("dynwall.toml"));
                (key, reason)
            }
            other => panic!("{other}"),
        }
    }
}

fn name(n: &str, domain: DomainRef) -> UserRef {
    UserRef::Name {
        name: n.into(),
        domain,
    }
}

const PASSWORD_TABLE: &str = r#"
[openstack.home]
auth_url = "https://keystone.example.net:5000/v3"
username = "owner"
user_domain_name = "Default"
password = "s3cret"
project_name = "home"
project_domain_id = "default"
"#;

#[test]
fn a_password_cloud_from_the_table_alone() {
    let d = Dir::new();
    let c = d.cloud(PASSWORD_TABLE, &[]);
    assert_eq!(c.name, CloudName("home".into()));
    assert_eq!(c.source, ConnectionSource::Table);
    assert_eq!(c.auth_url.as_str(), "https://keystone.example.net:5000/v3");
    assert_eq!(
        c.auth.token_url().as_str(),
        "https://keystone.example.net:5000/v3/auth/tokens"
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::Password {
            user: name("owner", DomainRef::Name("Default".into())),
            password: Secret::new("s3cret"),
            project: ProjectRef::Name {
                name: "home".into(),
                domain: DomainRef::Id("default".into())
            },
        }
    );
    assert_eq!(c.region, None);
    assert_eq!(c.interface, Interface::Public);
    assert_eq!(c.timeout, DEFAULT_API_TIMEOUT);
    assert!(!c.allow_insecure_http);
    assert_eq!(
        c.endpoint_choice(),
        EndpointChoice {
            interface: Interface::Public,
            region: None,
            allow_insecure_http: false
        }
    );
    let cfg = d.parse(PASSWORD_TABLE, &[]).unwrap();
    assert!(
        cfg.indigo.is_none(),
        "no [indigo] table: the Indigo cloud is not configured"
    );
    assert!(!format!("{cfg:?}").contains("s3cret"));
}

#[test]
fn ids_region_interface_and_timeout() {
    let d = Dir::new();
    let c = d.cloud(
        r#"
[openstack.lab]
auth_url = "https://k.example"
user_id = "u1"
password = "pw"
project_id = "p1"
region_name = "RegionTwo"
interface = "internal"
timeout = "10s"
"#,
        &[],
    );
    assert_eq!(
        c.auth.token_url().as_str(),
        "https://k.example/v3/auth/tokens"
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::Password {
            user: UserRef::Id("u1".into()),
            password: Secret::new("pw"),
            project: ProjectRef::Id("p1".into()),
        }
    );
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    assert_eq!(c.interface, Interface::Internal);
    assert_eq!(c.timeout, Duration::from_secs(10));
}

#[test]
fn application_credentials_by_id_or_by_name_with_the_user() {
    let d = Dir::new();
    d.write("appcred", "  the-secret\n");
    let c = d.cloud(
        r#"
[openstack.home]
auth_url = "https://k.example/v3"
application_credential_id = "423f"
application_credential_secret_file = "appcred"
"#,
        &[],
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::ApplicationCredential {
            credential: AppCredentialRef::Id("423f".into()),
            secret: Secret::new("the-secret"),
        }
    );
    let c = d.cloud(
        r#"
[openstack.home]
auth_url = "https://k.example/v3"
application_credential_name = "dynwall"
username = "owner"
user_domain_id = "default"
application_credential_secret = "inline"
"#,
        &[],
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::ApplicationCredential {
            credential: AppCredentialRef::Name {
                name: "dynwall".into(),
                user: name("owner", DomainRef::Id("default".into())),
            },
            secret: Secret::new("inline"),
        }
    );
}

#[test]
fn skyatlas_v2_is_inferred_and_guarded_against_plain_http() {
    let d = Dir::new();
    let sky = r#"
[openstack.sky]
auth_url = "http://185.48.212.8:5000/v2.0"
username = "owner@example.com"
password = "pw"
tenant_id = "9f2b"
"#;
    let (key, reason) = d.error(sky, &[]);
    assert_eq!(key, "openstack.sky.auth_url");
    assert_eq!(
        reason,
        "http://185.48.212.8:5000/v2.0 is plain http to a non-loopback host: the password would \
         travel unencrypted; use https, or set openstack.sky.allow_insecure_http = true if this \
         cloud offers nothing else (every authentication then logs a warning)"
    );
    let c = d.cloud(&format!("{sky}allow_insecure_http = true\n"), &[]);
    assert_eq!(c.auth.version(), IdentityVersion::V2);
    assert_eq!(
        c.auth.token_url().as_str(),
        "http://185.48.212.8:5000/v2.0/tokens"
    );
    assert_eq!(c.auth.plain_http_host().as_deref(), Some("185.48.212.8"));
    assert_eq!(
        c.auth.credentials(),
        &Credentials::V2Password {
            username: "owner@example.com".into(),
            password: Secret::new("pw"),
            tenant: TenantRef::Id("9f2b".into()),
        }
    );
    // A tenant alone says v2.0, and an unversioned URL gets /v2.0.
    let c = d.cloud(
        r#"
[openstack.sky]
auth_url = "https://keystone.example:5000"
username = "owner@example.com"
password = "pw"
tenant_name = "home"
"#,
        &[],
    );
    assert_eq!(
        c.auth.token_url().as_str(),
        "https://keystone.example:5000/v2.0/tokens"
    );
    // Loopback is not the network: a local test cloud needs no switch.
    let c = d.cloud(
        r#"
[openstack.sim]
auth_type = "v2password"
auth_url = "http://127.0.0.1:5000/v2.0"
username = "u"
password = "pw"
tenant_name = "t"
"#,
        &[],
    );
    assert_eq!(c.auth.plain_http_host(), None);
}

#[test]
fn clouds_yaml_with_secure_yaml_and_table_overrides() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        r#"
clouds:
  mycloud:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: owner
      user_domain_name: Default
      project_id: 9f2b
      project_name: home
    region_name: RegionOne
    interface: public
"#,
    );
    d.write(
        "secure.yaml",
        "clouds:\n  mycloud:\n    auth:\n      password: from-secure\n",
    );
    let c = d.cloud("[openstack.home]\ncloud = \"mycloud\"\n", &[]);
    assert_eq!(
        c.source,
        ConnectionSource::CloudsYaml {
            cloud: "mycloud".into(),
            file: d.path("clouds.yaml"),
            secure: Some(d.path("secure.yaml")),
        }
    );
    // Both project keys in the file: the id wins, as keystoneauth sends it.
    assert_eq!(
        c.auth.credentials(),
        &Credentials::Password {
            user: name("owner", DomainRef::Name("Default".into())),
            password: Secret::new("from-secure"),
            project: ProjectRef::Id("9f2b".into()),
        }
    );
    assert_eq!(c.region.as_deref(), Some("RegionOne"));

    // Explicit keys win: a project name replaces both of the file's project keys, and an inline
    // password the secure.yaml one.
    let c = d.cloud(
        r#"
[openstack.home]
cloud = "mycloud"
project_name = "other"
project_domain_name = "Default"
password = "inline"
region_name = "RegionTwo"
"#,
        &[],
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::Password {
            user: name("owner", DomainRef::Name("Default".into())),
            password: Secret::new("inline"),
            project: ProjectRef::Name {
                name: "other".into(),
                domain: DomainRef::Name("Default".into())
            },
        }
    );
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
}

#[test]
fn a_systemd_credential_beats_password_file_and_secure_yaml() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        "clouds:\n  c:\n    auth: {auth_url: 'https://k.example/v3', user_id: u, project_id: p, password: from-yaml}\n",
    );
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("openstack_home_password"),
        "from-credential\n",
    )
    .unwrap();
    d.write("pw", "from-file\n");
    let table = "[openstack.home]\ncloud = \"c\"\npassword_file = \"pw\"\n";
    let dir = creds.path().display().to_string();
    let c = d.cloud(table, &[("CREDENTIALS_DIRECTORY", &dir)]);
    assert!(matches!(c.auth.credentials(),
        Credentials::Password { password, .. } if password.expose() == "from-credential"));
    let c = d.cloud(table, &[]);
    assert!(matches!(c.auth.credentials(),
        Credentials::Password { password, .. } if password.expose() == "from-file"));
    let c = d.cloud("[openstack.home]\ncloud = \"c\"\n", &[]);
    assert!(matches!(c.auth.credentials(),
        Credentials::Password { password, .. } if password.expose() == "from-yaml"));
}

#[test]
fn choosing_an_application_credential_in_the_table_drops_the_files_password() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        "clouds:\n  c:\n    auth: {auth_url: 'https://k.example/v3', username: u, user_domain_name: D, project_name: p, password: pw}\n",
    );
    let c = d.cloud(
        "[openstack.home]\ncloud = \"c\"\napplication_credential_id = \"ac\"\napplication_credential_secret = \"s\"\n",
        &[],
    );
    assert_eq!(
        c.auth.credentials(),
        &Credentials::ApplicationCredential {
            credential: AppCredentialRef::Id("ac".into()),
            secret: Secret::new("s"),
        }
    );
}

#[test]
fn an_old_clouds_yaml_entry_speaks_v2_through_openstacksdk_names() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        r#"
clouds:
  sky:
    auth_type: password
    identity_api_version: 2
    auth:
      auth_url: https://keystone.example:5000
      username: owner@example.com
      password: pw
      project_name: home
"#,
    );
    let c = d.cloud("[openstack.sky]\ncloud = \"sky\"\n", &[]);
    assert_eq!(
        c.auth.credentials(),
        &Credentials::V2Password {
            username: "owner@example.com".into(),
            password: Secret::new("pw"),
            tenant: TenantRef::Name("home".into()),
        }
    );
    assert_eq!(
        c.auth.token_url().as_str(),
        "https://keystone.example:5000/v2.0/tokens"
    );
}

#[test]
fn an_openrc_environment_serves_when_the_table_names_no_connection() {
    let d = Dir::new();
    let openrc = [
        ("OS_AUTH_URL", "https://keystone.example:5000/v3"),
        ("OS_PROJECT_ID", "9f2b"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_USERNAME", "owner"),
        ("OS_PASSWORD", "from-env"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_INTERFACE", "public"),
    ];
    let c = d.cloud("[openstack.home]\n", &openrc);
    assert_eq!(c.source, ConnectionSource::Environment);
    assert_eq!(c.region.as_deref(), Some("RegionOne"));
    assert!(matches!(c.auth.credentials(),
        Credentials::Password { password, .. } if password.expose() == "from-env"));
    // Explicit keys override the environment.
    let c = d.cloud("[openstack.home]\nregion_name = \"RegionTwo\"\n", &openrc);
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    // A table that names its own connection takes nothing from the environment.
    let (key, reason) = d.error(
        "[openstack.home]\nauth_url = \"https://k.example/v3\"\nuser_id = \"u\"\nproject_id = \"p\"\n",
        &openrc,
    );
    assert_eq!(key, "openstack.home.password");
    assert_eq!(
        reason,
        "missing: set openstack.home.password or openstack.home.password_file, or the systemd \
         credential openstack_home_password"
    );
    // $OS_CLOUD names a clouds.yaml entry, as for the openstack command.
    d.write(
        "clouds.yaml",
        "clouds:\n  named:\n    auth: {auth_url: 'https://named.example/v3', user_id: u, project_id: p, password: pw}\n",
    );
    let c = d.cloud("[openstack.home]\n", &[("OS_CLOUD", "named")]);
    assert_eq!(c.auth_url.as_str(), "https://named.example/v3");
}

#[test]
fn indigo_and_openstack_side_by_side() {
    let d = Dir::new();
    // Two clouds: each entry names its own.
    let text = format!(
        "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n{PASSWORD_TABLE}\n[[probe]]\ncloud = \"home\"\ninstance = \"vps1\"\n"
    );
    let cfg = Config::parse(&text, &d.path("dynwall.toml"), &d.env(&[])).unwrap();
    assert!(cfg.indigo.is_some());
    assert_eq!(
        cfg.openstack.keys().collect::<Vec<_>>(),
        [&CloudName("home".into())]
    );
    // With OpenStack clouds and no [indigo] table, Indigo keys in the environment do not make one.
    let cfg = d
        .parse(
            PASSWORD_TABLE,
            &[("IndigoApiKey", "k"), ("IndigoApiPrivateKey", "s")],
        )
        .unwrap();
    assert!(cfg.indigo.is_none());
}

#[test]
fn each_validation_error_names_its_key_and_why() {
    let d = Dir::new();
    let url = "auth_url = \"https://k.example/v3\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[openstack.home]\n".into(),
            "openstack.home.auth_url",
            "missing: set auth_url (with the credentials), or cloud = \"…\" naming a clouds.yaml \
             entry, or run with the OS_* variables of an openrc file",
        ),
        (
            format!("[openstack.home]\n{url}user_id = \"u\"\npassword = \"p\"\napplication_credential_id = \"a\"\n"),
            "openstack.home.application_credential_id",
            "conflicts with openstack.home.password: authenticate with a password or an \
             application credential, not both",
        ),
        (
            format!("[openstack.home]\n{url}user_id = \"u\"\npassword = \"p\"\nproject_id = \"a\"\nproject_name = \"b\"\n"),
            "openstack.home.project_name",
            "set either openstack.home.project_id or openstack.home.project_name, not both",
        ),
        (
            format!("[openstack.home]\n{url}username = \"u\"\npassword = \"p\"\nproject_id = \"a\"\n"),
            "openstack.home.user_domain_name",
            "missing: a username needs openstack.home.user_domain_name or \
             openstack.home.user_domain_id (often \"Default\")",
        ),
        (
            format!("[openstack.home]\n{url}user_id = \"u\"\npassword = \"p\"\n"),
            "openstack.home.project_name",
            "missing: a password token is scoped to a project, which brings the service catalog: \
             set project_name (with project_domain_name) or project_id",
        ),
        (
            format!("[openstack.home]\n{url}password = \"p\"\nproject_id = \"a\"\n"),
            "openstack.home.username",
            "missing: set username (or user_id)",
        ),
        (
            format!("[openstack.home]\n{url}user_id = \"u\"\npassword = \"p\"\nproject_id = \"a\"\ninterface = \"admin\"\n"),
            "openstack.home.interface",
            "\"admin\" is not supported (expected \"public\" or \"internal\")",
        ),
        (
            "[openstack.home]\nauth_url = \"https://k.example/v2.0\"\nusername = \"u\"\nuser_domain_name = \"D\"\npassword = \"p\"\ntenant_id = \"t\"\n".into(),
            "openstack.home.user_domain_name",
            "is a Keystone v3 key; auth_type \"v2password\" with https://k.example/v2.0 speaks \
             Keystone v2.0",
        ),
        (
            "[openstack.home]\nauth_type = \"password\"\nauth_url = \"https://k.example/v2.0\"\nuser_id = \"u\"\npassword = \"p\"\nproject_id = \"t\"\n".into(),
            "openstack.home.auth_url",
            "https://k.example/v2.0 is a Keystone v2.0 URL, but auth_type \"password\" speaks v3",
        ),
        (
            format!("[openstack.home]\n{url}auth_type = \"token\"\n"),
            "openstack.home.auth_type",
            "\"token\" is not supported: dynwall authenticates with \"password\", \
             \"v3applicationcredential\" or \"v2password\"",
        ),
        (
            format!("[openstack.home]\n{url}application_credential_id = \"a\"\napplication_credential_secret = \"s\"\nproject_name = \"p\"\n"),
            "openstack.home.project_name",
            "does not apply to an application credential: it carries its own project and no \
             scope is sent",
        ),
        (
            format!("[openstack.home]\n{url}application_credential_name = \"a\"\napplication_credential_secret = \"s\"\n"),
            "openstack.home.username",
            "missing: an application credential named by name belongs to a user: set user_id, or \
             username with user_domain_name",
        ),
        (
            format!("[openstack.home]\n{url}application_credential_id = \"a\"\n"),
            "openstack.home.application_credential_secret",
            "missing: set openstack.home.application_credential_secret or \
             openstack.home.application_credential_secret_file, or the systemd credential \
             openstack_home_application_credential_secret",
        ),
        (
            format!("[openstack.home]\n{url}application_credential_id = \"a\"\napplication_credential_secret = \"s\"\napplication_credential_secret_file = \"f\"\n"),
            "openstack.home.application_credential_secret",
            "set either openstack.home.application_credential_secret or \
             openstack.home.application_credential_secret_file, not both",
        ),
        (
            "[openstack.home]\nauth_url = \"https://k.example/v2.0\"\nusername = \"u\"\npassword = \"p\"\n".into(),
            "openstack.home.tenant_id",
            "missing: a v2.0 token is scoped to a tenant, which brings the service catalog: set \
             tenant_id or tenant_name",
        ),
        (
            format!("[openstack.home]\n{url}user_id = \"u\"\npassword = \"p\"\ntenant_id = \"t\"\nauth_type = \"password\"\n"),
            "openstack.home.tenant_id",
            "is a Keystone v2.0 key (auth_type \"v2password\"); with v3 set project_id or \
             project_name",
        ),
        (
            "[openstack.home]\nauth_url = \"ftp://k.example/v3\"\nuser_id = \"u\"\npassword = \"p\"\nproject_id = \"t\"\n".into(),
            "openstack.home.auth_url",
            "unsupported scheme \"ftp\" (expected https)",
        ),
        (
            "[openstack.home]\nauth_url = \"https://owner:pw@k.example/v3\"\n".into(),
            "openstack.home.auth_url",
            "carries a user name or password; give credentials in their own keys",
        ),
        (
            "[openstack.home]\nauth_url = \"keystone\"\n".into(),
            "openstack.home.auth_url",
            "invalid URL \"keystone\": relative URL without a base",
        ),
        (
            format!("[openstack.home]\n{url}region_name = \" \"\n"),
            "openstack.home.region_name",
            "must not be empty",
        ),
        (
            format!("[openstack.indigo]\n{url}"),
            "openstack.indigo",
            "\"indigo\" is the cloud of the [indigo] table; name this one differently",
        ),
        (
            format!("[openstack.\"my cloud\"]\n{url}"),
            "openstack.my cloud",
            "\"my cloud\" is not a cloud name: use 1 to 64 letters, digits, '_' or '-'",
        ),
        (
            "[openstack.home]\ncloud = \"mycloud\"\n".into(),
            "openstack.home.cloud",
            "",
        ),
    ];
    for (table, want_key, want_reason) in cases {
        let (key, reason) = d.error(&table, &[]);
        assert_eq!(key, want_key, "{table}");
        if want_key == "openstack.home.cloud" {
            assert_eq!(
                reason,
                format!(
                    "{} has no cloud \"mycloud\" (it has: none)",
                    d.path("clouds.yaml").display()
                )
            );
        } else {
            assert_eq!(reason, want_reason, "{table}");
        }
    }
}

#[test]
fn a_bad_value_from_clouds_yaml_says_where_it_came_from() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        "clouds:\n  c:\n    interface: admin\n    auth: {auth_url: 'http://keystone.example:5000/v3', user_id: u, project_id: p, password: pw}\n",
    );
    let (key, reason) = d.error("[openstack.home]\ncloud = \"c\"\n", &[]);
    let origin = format!(
        "clouds.yaml entry \"c\" ({}, with {})",
        d.path("clouds.yaml").display(),
        d.path("secure.yaml").display()
    );
    assert_eq!(key, "openstack.home.auth_url");
    assert!(
        reason.starts_with(&format!(
            "http://keystone.example:5000/v3 (from {origin}) is plain http"
        )),
        "{reason}"
    );
    let (key, reason) = d.error(
        "[openstack.home]\ncloud = \"c\"\nallow_insecure_http = true\n",
        &[],
    );
    assert_eq!(key, "openstack.home.interface");
    assert_eq!(
        reason,
        format!("\"admin\" (from {origin}) is not supported (expected \"public\" or \"internal\")")
    );
    // A vendor profile's defaults are not read: the missing URL says so.
    d.write(
        "clouds.yaml",
        "clouds:\n  c:\n    profile: vexxhost\n    auth: {user_id: u}\n",
    );
    let (key, reason) = d.error("[openstack.home]\ncloud = \"c\"\n", &[]);
    assert_eq!(key, "openstack.home.auth_url");
    assert!(
        reason.contains("names the vendor profile \"vexxhost\""),
        "{reason}"
    );
}

#[test]
fn a_missing_secret_says_where_else_it_may_be() {
    let d = Dir::new();
    d.write(
        "clouds.yaml",
        "clouds:\n  c:\n    auth: {auth_url: 'https://k.example/v3', user_id: u, project_id: p}\n",
    );
    let (key, reason) = d.error("[openstack.home]\ncloud = \"c\"\n", &[]);
    assert_eq!(key, "openstack.home.password");
    assert!(
        reason.ends_with(
            "or the systemd credential openstack_home_password, or the clouds.yaml or secure.yaml \
             entry \"c\""
        ),
        "{reason}"
    );
    let (key, reason) = d.error(
        "[openstack.home]\n",
        &[
            ("OS_AUTH_URL", "https://k.example/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "a"),
        ],
    );
    assert_eq!(key, "openstack.home.application_credential_secret");
    assert!(
        reason.ends_with(", or $OS_APPLICATION_CREDENTIAL_SECRET"),
        "{reason}"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let d = Dir::new();
    let (key, reason) = d.error(
        "[openstack.home]\nauth_url = \"https://k.example/v3\"\nregion = \"x\"\n",
        &[],
    );
    assert_eq!(key, "openstack.home.region");
    assert!(reason.starts_with("unknown key"), "{reason}");
}

#[test]
fn commands_that_skip_secrets_tolerate_an_unreadable_clouds_yaml() {
    let d = Dir::new();
    std::fs::remove_file(d.path("clouds.yaml")).unwrap();
    let text = "[openstack.home]\ncloud = \"mycloud\"\n\n[[firewall]]\nsecurity_group = \"ssh\"\n";
    let path = d.path("dynwall.toml");
    let env = d.env(&[]);
    match Config::parse(text, &path, &env) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "openstack.home.cloud"),
        other => panic!("{other:?}"),
    }
    let cfg = Config::parse(text, &path, &WithoutSecrets(&env)).unwrap();
    assert!(cfg.openstack.is_empty());
    assert_eq!(cfg.firewalls[0].cloud, CloudName("home".into()));
    // A mistake in the table itself is still an error.
    let bad = text.replace("[[firewall]]", "[[firewall]]\ntemplate = 5");
    assert!(Config::parse(&bad, &path, &WithoutSecrets(&env)).is_err());
}

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
