use clap::Parser;

use super::*;

fn parse(argv: &[&str]) -> Config {
    let args =
        Args::try_parse_from(std::iter::once("fairway-controller").chain(argv.iter().copied()))
            .expect("valid command line");
    Config::from_args(args)
}

#[test]
fn defaults_match_the_design_contract() {
    let c = parse(&[]);
    assert_eq!(c.grpc_addr.to_string(), "0.0.0.0:18000");
    assert_eq!(c.admin_addr.to_string(), "0.0.0.0:9090");
    assert_eq!(
        c.coalesce,
        crate::store::DEFAULT_COALESCE,
        "flag text and constant agree"
    );
    assert_eq!(
        c.source,
        Source::Kubernetes {
            namespaces: vec![],
            selector: None
        }
    );
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.cluster_domain, "cluster.local");
    assert!(
        !c.implicit_services,
        "Services need a Route unless asked otherwise"
    );
    assert_eq!(
        c.auth,
        AuthConfig::TokenReview(Policy {
            audience: "fairway".into(),
            allowed: Default::default(),
            admit_injected: false,
        }),
        "authentication is on unless switched off"
    );
    assert_eq!(c.tls, None);
    assert_eq!(
        c.check(),
        Err(ConfigError::NoAllowedServiceAccounts),
        "with nobody allowed the controller refuses to start"
    );
}

#[test]
fn auth_and_tls_flags_parse() {
    let c = parse(&[
        "--allowed-service-account=fairway/fairway-proxy",
        "--allowed-service-account=edge/gw",
        "--token-audience=mesh",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-key-file=/tls/tls.key",
        "--tls-client-ca-file=/tls/ca.crt",
    ]);
    let AuthConfig::TokenReview(policy) = &c.auth else {
        panic!("token review expected: {:?}", c.auth)
    };
    assert_eq!(policy.audience, "mesh");
    let allowed: Vec<String> = policy.allowed.iter().map(ToString::to_string).collect();
    assert_eq!(allowed, ["edge/gw", "fairway/fairway-proxy"]);
    assert_eq!(c.check(), Ok(()));
    assert_eq!(
        c.tls,
        Some(TlsConfig {
            cert_file: "/tls/tls.crt".into(),
            key_file: "/tls/tls.key".into(),
            client_ca_file: Some("/tls/ca.crt".into()),
        })
    );

    let c = parse(&["--no-auth", "--static-dir=/srv"]);
    assert_eq!(c.auth, AuthConfig::Disabled);
    assert_eq!(c.check(), Ok(()));
    let c = parse(&["--static-dir=/srv", "--allowed-service-account=a/b"]);
    assert_eq!(c.check(), Err(ConfigError::TokenReviewWithoutApi));

    let parse =
        |argv: &[&str]| Args::try_parse_from(std::iter::once("x").chain(argv.iter().copied()));
    assert!(
        parse(&["--tls-cert-file=/a"]).is_err(),
        "a certificate needs its key"
    );
    assert!(
        parse(&["--no-auth", "--allowed-service-account=a/b"]).is_err(),
        "contradiction"
    );
    assert!(parse(&["--allowed-service-account=nobody"]).is_err());
}

#[test]
fn flags_parse_into_typed_values() {
    let c = parse(&[
        "--grpc-addr=127.0.0.1:1",
        "--static-dir=/srv/routes",
        "--coalesce=100ms",
        "--log-format=text",
        "--cluster-domain=Corp.Example.",
    ]);
    assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:1");
    assert_eq!(c.source, Source::StaticDir("/srv/routes".into()));
    assert_eq!(c.coalesce, Duration::from_millis(100));
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.cluster_domain, "corp.example", "compared as hosts are");

    let c = parse(&["--namespace=a", "--namespace=b", "--selector=team=shop"]);
    assert_eq!(
        c.source,
        Source::Kubernetes {
            namespaces: vec!["a".into(), "b".into()],
            selector: Some("team=shop".into())
        }
    );
}

#[test]
fn nonsense_is_rejected() {
    let parse =
        |argv: &[&str]| Args::try_parse_from(std::iter::once("x").chain(argv.iter().copied()));
    assert!(
        parse(&["--coalesce=20"]).is_err(),
        "a duration needs a unit"
    );
    assert!(
        parse(&["--coalesce=20s"]).is_err(),
        "longer than the maximum"
    );
    assert!(parse(&["--grpc-addr=nowhere"]).is_err());
}

#[test]
fn pod_events_come_with_the_webhook_and_the_api() {
    let webhook = [
        "--webhook-addr=127.0.0.1:9443",
        "--webhook-cert-file=c",
        "--webhook-key-file=k",
        "--inject-template=t",
        "--no-auth",
    ];
    let with = |extra: &[&str]| parse(&[&webhook[..], extra].concat());
    let config = with(&[
        "--pod-events",
        "--webhook-excluded-namespace=kube-system,fairway",
    ]);
    let hook = config.webhook.clone().expect("webhook");
    assert!(hook.pod_events);
    assert_eq!(hook.excluded_namespaces, ["kube-system", "fairway"]);
    assert_eq!(config.check(), Ok(()));
    assert!(
        !with(&[]).webhook.expect("webhook").pod_events,
        "off by default"
    );
    let static_dir = with(&["--pod-events", "--static-dir=/tmp/routes"]);
    assert_eq!(static_dir.check(), Err(ConfigError::PodEventsWithoutApi));
    let alone = Args::try_parse_from(["x", "--pod-events", "--no-auth"]);
    assert!(alone.is_err(), "pod Events belong to the injector");
}
