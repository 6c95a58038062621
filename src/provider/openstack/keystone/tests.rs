use std::time::{Duration, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::*;
use crate::provider::openstack::catalog::{EndpointChoice, Interface, Service};
use crate::provider::openstack::fixtures::exchange;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn password_auth(auth_url: &str) -> KeystoneAuth {
    KeystoneAuth::new(
        &url(auth_url),
        Credentials::Password {
            user: UserRef::Name {
                name: "demo".into(),
                domain: DomainRef::Id("default".into()),
            },
            password: Secret::new("demopw"),
            project: ProjectRef::Name {
                name: "demo".into(),
                domain: DomainRef::Id("default".into()),
            },
        },
    )
    .unwrap()
}

fn app_credential(credential: AppCredentialRef) -> KeystoneAuth {
    KeystoneAuth::new(
        &url("http://127.0.0.1:39339/v3"),
        Credentials::ApplicationCredential {
            credential,
            secret: Secret::new(
                "0FJTToEWqw6FxSL4PGhIcEc4aEsUnmSjg1T2i1dETt8_5wEBbZk4eUo_3moE6Smsl0tKitsrkhVLlYh8ZQUtqw",
            ),
        },
    )
    .unwrap()
}

fn v2_auth(tenant: TenantRef) -> KeystoneAuth {
    KeystoneAuth::new(
        &url("http://127.0.0.1:53511/v2.0"),
        Credentials::V2Password {
            username: "demo".into(),
            password: Secret::new("demopw"),
            tenant,
        },
    )
    .unwrap()
}

fn body(r: &TokenRequest) -> Value {
    serde_json::from_str(r.body.expose()).unwrap()
}

fn public() -> EndpointChoice {
    EndpointChoice {
        interface: Interface::Public,
        region: None,
        allow_insecure_http: false,
    }
}

#[test]
fn token_urls_follow_the_auth_url_version() {
    let cases = [
        (
            "https://k.example:5000/v3",
            "https://k.example:5000/v3/auth/tokens",
        ),
        (
            "https://k.example:5000/v3/",
            "https://k.example:5000/v3/auth/tokens",
        ),
        (
            "https://k.example:5000",
            "https://k.example:5000/v3/auth/tokens",
        ),
        (
            "https://k.example/identity/",
            "https://k.example/identity/v3/auth/tokens",
        ),
        (
            "https://k.example/identity/v3?x=1",
            "https://k.example/identity/v3/auth/tokens",
        ),
    ];
    for (given, want) in cases {
        assert_eq!(password_auth(given).token_url().as_str(), want, "{given}");
    }
    let v2 = |u: &str| {
        KeystoneAuth::new(
            &url(u),
            Credentials::V2Password {
                username: "u".into(),
                password: Secret::new("p"),
                tenant: TenantRef::Id("t".into()),
            },
        )
    };
    assert_eq!(
        v2("http://185.48.212.8:5000/v2.0")
            .unwrap()
            .token_url()
            .as_str(),
        "http://185.48.212.8:5000/v2.0/tokens"
    );
    assert_eq!(
        v2("https://k.example:5000/").unwrap().token_url().as_str(),
        "https://k.example:5000/v2.0/tokens"
    );
    let err = v2("https://k.example:5000/v3").unwrap_err();
    assert_eq!(
        err,
        "https://k.example:5000/v3 is a Keystone v3 URL, but auth_type \"v2password\" speaks v2.0"
    );
    assert_eq!(
        IdentityVersion::of_url(&url("https://k.example/v2.0/")),
        Some(IdentityVersion::V2)
    );
    assert_eq!(IdentityVersion::of_url(&url("https://k.example/")), None);
}

#[test]
fn v3_password_request_matches_the_recorded_one() {
    let recorded = exchange("keystone_v3", "password_project_scoped");
    let r = password_auth("http://127.0.0.1:39339/v3").request();
    assert_eq!(r.url.as_str(), "http://127.0.0.1:39339/v3/auth/tokens");
    assert_eq!(body(&r), recorded.request);
    assert!(!format!("{r:?}").contains("demopw"));
}

#[test]
fn v3_password_request_by_ids() {
    let auth = KeystoneAuth::new(
        &url("https://k.example/v3"),
        Credentials::Password {
            user: UserRef::Id("u1".into()),
            password: Secret::new("pw"),
            project: ProjectRef::Id("p1".into()),
        },
    )
    .unwrap();
    assert_eq!(
        body(&auth.request()),
        serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"id": "u1", "password": "pw"}}},
            "scope": {"project": {"id": "p1"}}}})
    );
}

#[test]
fn application_credential_requests_match_the_recorded_ones_and_send_no_scope() {
    let cases = [
        (
            "app_credential_by_id",
            AppCredentialRef::Id("dab5faebf88546bb8e7f9fd4f5515852".into()),
        ),
        (
            "app_credential_by_name_user_id",
            AppCredentialRef::Name {
                name: "osreal".into(),
                user: UserRef::Id("53416cb05df14706abfc9f54de8dea6e".into()),
            },
        ),
        (
            "app_credential_by_name_user_name",
            AppCredentialRef::Name {
                name: "osreal".into(),
                user: UserRef::Name {
                    name: "demo".into(),
                    domain: DomainRef::Name("Default".into()),
                },
            },
        ),
    ];
    for (name, credential) in cases {
        let recorded = exchange("keystone_v3", name);
        let b = body(&app_credential(credential).request());
        assert_eq!(b, recorded.request, "{name}");
        assert!(b["auth"].get("scope").is_none());
    }
}

#[test]
fn v2_requests_match_the_recorded_ones() {
    let by_name = exchange("keystone_v2", "tenant_name");
    let r = v2_auth(TenantRef::Name("demo".into())).request();
    assert_eq!(r.url.as_str(), "http://127.0.0.1:53511/v2.0/tokens");
    assert_eq!(body(&r), by_name.request);
    let by_id = exchange("keystone_v2", "tenant_id");
    let r = v2_auth(TenantRef::Id("4fe2f49153c24c4597d1db1bd0f77910".into())).request();
    assert_eq!(body(&r), by_id.request);
}

#[test]
fn a_v3_token_comes_from_the_header_with_its_expiry_and_catalog() {
    let e = exchange("keystone_v3", "password_project_scoped");
    let auth = password_auth("http://127.0.0.1:39339/v3");
    let t = auth.parse(e.status, &e.headers, &e.body).unwrap();
    assert_eq!(t.token.expose(), "gAAAAABrEUjwe7-z...");
    // 2026-12-03T11:48:16Z
    assert_eq!(
        t.expires_at,
        UNIX_EPOCH + Duration::from_secs(1_796_298_496)
    );
    assert_eq!(t.lifetime(UNIX_EPOCH), Duration::from_secs(3600));
    let net = t.catalog.endpoint(Service::Network, &public()).unwrap();
    assert_eq!(net.as_str(), "http://127.0.0.1:60989/");
    let compute = t.catalog.endpoint(Service::Compute, &public()).unwrap();
    assert_eq!(
        compute.as_str(),
        "http://127.0.0.1:54427/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc"
    );
    let internal = EndpointChoice {
        interface: Interface::Internal,
        region: Some("RegionOne".into()),
        allow_insecure_http: false,
    };
    assert!(t.catalog.endpoint(Service::Network, &internal).is_ok());
    assert!(!format!("{t:?}").contains("gAAAA"), "{t:?}");
}

#[test]
fn application_credential_and_pike_tokens_parse_alike() {
    let e = exchange("keystone_v3", "app_credential_by_id");
    let auth = app_credential(AppCredentialRef::Id("x".into()));
    let t = auth.parse(e.status, &e.headers, &e.body).unwrap();
    assert_eq!(t.token.expose(), "gAAAAABrEUjzdNcs...");
    assert!(t.catalog.endpoint(Service::Compute, &public()).is_ok());

    let e = exchange("keystone_v3", "pike_password_project_scoped");
    let t = password_auth("http://127.0.0.1:53511/v3")
        .parse(e.status, &e.headers, &e.body)
        .unwrap();
    assert_eq!(
        t.catalog
            .endpoint(Service::Network, &public())
            .unwrap()
            .as_str(),
        "http://127.0.0.1:44853/"
    );
}

#[test]
fn a_v2_token_comes_from_the_body_with_its_service_catalog() {
    for name in ["tenant_name", "tenant_id"] {
        let e = exchange("keystone_v2", name);
        let t = v2_auth(TenantRef::Name("demo".into()))
            .parse(e.status, &e.headers, &e.body)
            .unwrap();
        assert!(t.token.expose().starts_with("gAAAAABrEUh"), "{name}");
        assert_eq!(t.lifetime(UNIX_EPOCH), Duration::from_secs(3600));
        assert_eq!(
            t.catalog
                .endpoint(Service::Network, &public())
                .unwrap()
                .as_str(),
            "http://127.0.0.1:44853/"
        );
        let internal = EndpointChoice {
            interface: Interface::Internal,
            region: Some("RegionOne".into()),
            allow_insecure_http: false,
        };
        assert_eq!(
            t.catalog
                .endpoint(Service::Compute, &internal)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:53431/v2.1/4fe2f49153c24c4597d1db1bd0f77910"
        );
    }
}

#[test]
fn the_old_v2_sample_shape_parses_too() {
    // The api-ref sample: issued_at without a zone, expires with Z, an adminURL.
    let body = br#"{"access": {
        "token": {"id": "tok", "issued_at": "2014-01-30T17:09:57.647795",
                  "expires": "2014-01-31T17:09:57Z",
                  "tenant": {"id": "9f2b", "name": "demo", "enabled": true, "description": null}},
        "serviceCatalog": [{"type": "compute", "name": "nova", "endpoints_links": [],
            "endpoints": [{"id": "2dad", "region": "RegionOne",
                           "publicURL": "https://compute.example:8774/v2/9f2b",
                           "internalURL": "http://10.0.0.10:8774/v2/9f2b",
                           "adminURL": "http://10.0.0.10:8774/v2/9f2b"}]}],
        "user": {"id": "1f56", "name": "owner@example.com", "roles": []}}}"#;
    let t = v2_auth(TenantRef::Id("9f2b".into()))
        .parse(200, &HeaderMap::new(), body)
        .unwrap();
    assert_eq!(t.token.expose(), "tok");
    let lifetime = t.lifetime(UNIX_EPOCH);
    assert!(lifetime > Duration::from_secs(86_399) && lifetime < Duration::from_secs(86_400));
    assert_eq!(
        t.catalog
            .endpoint(Service::Compute, &public())
            .unwrap()
            .as_str(),
        "https://compute.example:8774/v2/9f2b"
    );
    assert_eq!(t.catalog.endpoints().len(), 3);
}

#[test]
fn every_4xx_is_credentials_rejected() {
    let cases = [
        ("keystone_v3", "password_wrong", 401),
        ("keystone_v3", "schema_error", 400),
        ("keystone_v3", "app_credential_unknown_id", 404),
        ("keystone_v3", "app_credential_with_scope", 401),
        ("keystone_v2", "wrong_password", 401),
        ("keystone_v2", "unknown_tenant", 401),
        ("keystone_v2", "malformed", 400),
    ];
    for (file, name, status) in cases {
        let e = exchange(file, name);
        assert_eq!(e.status, status);
        let auth = if file == "keystone_v2" {
            v2_auth(TenantRef::Id("t".into()))
        } else {
            password_auth("http://127.0.0.1:39339/v3")
        };
        let err = auth.parse(e.status, &e.headers, &e.body).unwrap_err();
        assert!(err.is_auth(), "{name}: {err}");
        assert!(!err.to_string().contains("demopw"), "{err}");
    }
    let e = exchange("keystone_v3", "app_credential_unknown_id");
    let err = app_credential(AppCredentialRef::Id("0".into()))
        .parse(e.status, &e.headers, &e.body)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "keystone at 127.0.0.1: credentials rejected (HTTP 404 Not Found: Could not find \
         Application Credential: 00000000000000000000000000000000.)"
    );
}

#[test]
fn an_unscoped_token_is_refused_for_want_of_a_catalog() {
    let e = exchange("keystone_v2", "unscoped");
    let err = v2_auth(TenantRef::Id("t".into()))
        .parse(e.status, &e.headers, &e.body)
        .unwrap_err();
    assert!(
        matches!(err, OpenStackError::NoCatalog { .. }) && err.is_config(),
        "{err}"
    );

    let mut headers = HeaderMap::new();
    headers.insert(SUBJECT_TOKEN_HEADER, "tok".parse().unwrap());
    let body = br#"{"token": {"methods": ["password"], "expires_at": "2026-12-03T11:48:16.000000Z",
        "issued_at": "2026-12-03T10:48:16.000000Z", "user": {"id": "u"}}}"#;
    let err = password_auth("https://k.example/v3")
        .parse(201, &headers, body)
        .unwrap_err();
    assert!(
        err.to_string().contains("check project_name or project_id"),
        "{err}"
    );
}

#[test]
fn broken_answers_are_malformed_or_retried() {
    let e = exchange("keystone_v3", "password_project_scoped");
    let auth = password_auth("http://127.0.0.1:39339/v3");
    let err = auth.parse(201, &HeaderMap::new(), &e.body).unwrap_err();
    assert!(
        err.to_string().contains("no X-Subject-Token header"),
        "{err}"
    );
    let err = auth.parse(201, &e.headers, b"{}").unwrap_err();
    assert!(matches!(err, OpenStackError::Malformed { .. }), "{err}");
    let bad_time = serde_json::to_vec(&serde_json::json!({"token": {
        "expires_at": "tomorrow", "project": {"id": "p"}, "catalog": []}}))
    .unwrap();
    let err = auth.parse(201, &e.headers, &bad_time).unwrap_err();
    assert!(err.to_string().contains("expires_at \"tomorrow\""), "{err}");
    let err = auth.parse(503, &HeaderMap::new(), b"").unwrap_err();
    assert!(err.is_transient() && !err.is_auth(), "{err}");
}

#[test]
fn timestamps_in_every_keystone_form() {
    let t = |s: &str| parse_timestamp(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
    let whole = Duration::from_secs(1_796_298_496);
    assert_eq!(t("2026-12-03T11:48:16Z"), Some(whole));
    assert_eq!(t("2026-12-03T11:48:16.000000Z"), Some(whole));
    assert_eq!(
        t("2026-12-03T11:48:16.5Z"),
        Some(whole + Duration::from_millis(500))
    );
    assert_eq!(t("2026-12-03T11:48:16"), Some(whole));
    assert_eq!(t("2026-12-03T11:48:16+00:00"), Some(whole));
    assert_eq!(t("2026-12-03"), None);
}

#[test]
fn plain_http_is_flagged_only_off_loopback() {
    assert_eq!(
        password_auth("http://127.0.0.1:5000/v3").plain_http_host(),
        None
    );
    assert_eq!(
        password_auth("https://k.example/v3").plain_http_host(),
        None
    );
    assert_eq!(
        password_auth("http://185.48.212.8:5000/v3")
            .plain_http_host()
            .as_deref(),
        Some("185.48.212.8")
    );
}
