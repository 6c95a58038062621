//! Every refusal names its key (or file) and says why.

use super::*;

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
