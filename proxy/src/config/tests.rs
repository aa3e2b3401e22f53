use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Config {
    let cli = Cli::try_parse_from(std::iter::once("fairway-proxy").chain(argv.iter().copied()))
        .expect("valid command line");
    Config::from_args(cli.args).expect("valid config")
}

#[test]
fn defaults_match_the_design_contract() {
    let c = parse(&["--controller-ca-file=/ca.crt"]);
    assert_eq!(
        c.controller.to_string(),
        "https://fairway-controller.fairway.svc:18000/"
    );
    assert_eq!(
        c.controller_tls,
        Some(ControllerTls {
            ca_file: "/ca.crt".into(),
            identity: None,
            server_name: None
        })
    );
    assert_eq!(c.controller_token_file, None);
    assert_eq!(c.listen, [DEFAULT_LISTEN.parse().unwrap()]);
    assert_eq!(c.admin_addr.to_string(), DEFAULT_ADMIN_ADDR);
    assert_eq!(c.zone, None);
    assert!(c.endpoint_labels);
    assert_eq!(c.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.shutdown_grace, crate::accept::DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(
        c.drain_delay,
        Duration::ZERO,
        "no drain unless asked (the chart asks)"
    );
    assert_eq!(
        c.header_read_timeout,
        crate::accept::DEFAULT_HEADER_READ_TIMEOUT
    );
    assert!(
        c.id.starts_with("fairway-proxy-"),
        "a generated id: {}",
        c.id
    );
}

#[test]
fn flags_parse_into_typed_values() {
    let c = parse(&[
        "--controller=http://127.0.0.1:18000",
        "--controller-plaintext",
        "--controller-token-file=/var/run/secrets/fairway/token",
        "--zone=eu-1a",
        "--id=proxy-0",
        "--node=n1",
        "--endpoint-labels=false",
        "--log-format=text",
        "--header-read-timeout=250ms",
        "--shutdown-grace=2m",
    ]);
    assert_eq!(c.zone.as_deref(), Some("eu-1a"));
    assert_eq!(c.id, "proxy-0");
    assert_eq!(c.node, "n1");
    assert!(
        !c.endpoint_labels,
        "--endpoint-labels=false switches labels off"
    );
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.header_read_timeout, Duration::from_millis(250));
    assert_eq!(c.shutdown_grace, Duration::from_secs(120));
    assert_eq!(c.controller_tls, None, "plaintext, as asked");
    assert_eq!(
        c.controller_token_file,
        Some("/var/run/secrets/fairway/token".into())
    );

    let c = parse(&[
        "--controller=https://10.0.0.1:18000",
        "--controller-ca-file=/tls/ca.crt",
        "--controller-cert-file=/tls/tls.crt",
        "--controller-key-file=/tls/tls.key",
        "--controller-server-name=fairway-controller.fairway.svc",
    ]);
    assert_eq!(
        c.controller_tls,
        Some(ControllerTls {
            ca_file: "/tls/ca.crt".into(),
            identity: Some(("/tls/tls.crt".into(), "/tls/tls.key".into())),
            server_name: Some("fairway-controller.fairway.svc".into()),
        })
    );
}

#[test]
fn plaintext_needs_saying_and_tls_needs_a_ca() {
    let config = |argv: &[&str]| {
        let cli =
            Cli::try_parse_from(std::iter::once("p").chain(argv.iter().copied())).expect("parses");
        Config::from_args(cli.args)
    };
    assert!(
        matches!(
            config(&["--controller=http://c:1"]),
            Err(ConfigError::Plaintext(_))
        ),
        "http:// without --controller-plaintext is refused"
    );
    assert!(matches!(config(&[]), Err(ConfigError::NoControllerCa(_))));
    assert!(matches!(
        config(&["--controller-plaintext", "--controller-ca-file=/ca"]),
        Err(ConfigError::PlaintextHttps(_))
    ));
    assert!(matches!(
        config(&[
            "--controller=http://c:1",
            "--controller-plaintext",
            "--controller-ca-file=/ca"
        ]),
        Err(ConfigError::TlsFlagWithPlaintext("controller-ca-file"))
    ));
    assert!(matches!(
        config(&["--controller-ca-file=/ca", "--controller-cert-file=/c"]),
        Err(ConfigError::HalfIdentity)
    ));
    assert!(matches!(
        config(&["--controller=ftp://c:1"]),
        Err(ConfigError::ControllerScheme(_))
    ));
    let message = ConfigError::Plaintext("http://c:1".into()).to_string();
    assert!(
        message.contains("--controller-plaintext"),
        "the error says how to proceed: {message}"
    );
}

#[test]
fn bad_values_are_rejected() {
    let cli = Cli::try_parse_from(["p", "--controller", "not a uri"]).expect("parses");
    assert!(matches!(
        Config::from_args(cli.args),
        Err(ConfigError::ControllerUri { .. })
    ));
    let cli = Cli::try_parse_from(["p", "--controller", "/just/a/path"]).expect("parses");
    assert!(matches!(
        Config::from_args(cli.args),
        Err(ConfigError::ControllerIncomplete(_))
    ));
    let cli = Cli::try_parse_from(["p", "--controller-ca-file=/ca", "--max-headers", "0"])
        .expect("parses");
    assert!(matches!(
        Config::from_args(cli.args),
        Err(ConfigError::Zero("max-headers"))
    ));
    assert!(Cli::try_parse_from(["p", "--shutdown-grace", "30"]).is_err());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("1.5s").is_err());
}

#[test]
fn listen_repeats_for_loopback_on_both_families() {
    let c = parse(&[
        "--controller-ca-file=/ca",
        "--listen=127.0.0.1:4140",
        "--listen=[::1]:4140",
    ]);
    let want: Vec<SocketAddr> = vec![
        "127.0.0.1:4140".parse().unwrap(),
        "[::1]:4140".parse().unwrap(),
    ];
    assert_eq!(c.listen, want, "one flag per address");
    let c = parse(&[
        "--controller-ca-file=/ca",
        "--listen=127.0.0.1:4140,[::1]:4140",
    ]);
    assert_eq!(c.listen, want, "or a comma-separated list (FAIRWAY_LISTEN)");

    let cli = Cli::try_parse_from([
        "p",
        "--controller-ca-file=/ca",
        "--listen=127.0.0.1:1",
        "--listen=127.0.0.1:1",
    ])
    .expect("parses");
    let error = Config::from_args(cli.args).expect_err("twice");
    assert!(matches!(error, ConfigError::ListenTwice(_)), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

fn parse_err(argv: &[&str]) -> ConfigError {
    let cli = Cli::try_parse_from(std::iter::once("fairway-proxy").chain(argv.iter().copied()))
        .expect("valid command line");
    Config::from_args(cli.args).expect_err("an invalid config")
}

#[test]
fn tracing_is_off_unless_a_collector_is_named() {
    let c = parse(&["--controller-ca-file=/ca.crt", "--id=p1"]);
    assert_eq!(c.trace, None, "off by default");
    let c = parse(&[
        "--controller-ca-file=/ca.crt",
        "--id=p1",
        "--otlp-endpoint=http://otel-collector.monitoring:4317",
        "--trace-sample-ratio=0.25",
    ]);
    let trace = c.trace.expect("on with an endpoint");
    assert_eq!(
        trace.endpoint.to_string(),
        "http://otel-collector.monitoring:4317/"
    );
    assert_eq!(trace.sample_per_million, 250_000);
    assert_eq!(
        (trace.service.as_str(), trace.id.as_str()),
        ("fairway-proxy", "p1")
    );
    let c = parse(&[
        "--controller-ca-file=/ca.crt",
        "--otlp-endpoint=http://c:4317",
    ]);
    assert_eq!(
        c.trace.map(|t| t.sample_per_million),
        Some(10_000),
        "0.01 by default"
    );
}

#[test]
fn bad_tracing_flags_are_refused() {
    assert!(matches!(
        parse_err(&["--controller-ca-file=/ca.crt", "--trace-sample-ratio=1.5"]),
        ConfigError::SampleRatio(_)
    ));
    for bad in ["otel:4317", "grpc://otel:4317", "http://"] {
        let flag = format!("--otlp-endpoint={bad}");
        assert!(
            matches!(
                parse_err(&["--controller-ca-file=/ca.crt", &flag]),
                ConfigError::OtlpEndpoint(_)
            ),
            "{bad}"
        );
    }
}

#[test]
fn outbound_listen_is_off_unless_set_and_takes_a_port_of_its_own() {
    let c = parse(&["--controller-ca-file=/ca"]);
    assert_eq!(c.outbound, None, "no captured listener by default");

    let c = parse(&[
        "--controller-ca-file=/ca",
        "--outbound-listen=127.0.0.1:4143",
    ]);
    let outbound = c.outbound.expect("set");
    assert_eq!(outbound.listen, ["127.0.0.1:4143".parse().unwrap()]);
    let c = parse(&[
        "--controller-ca-file=/ca",
        "--outbound-listen=127.0.0.1:4143,[::1]:4143",
    ]);
    let both: Vec<SocketAddr> = vec![
        "127.0.0.1:4143".parse().unwrap(),
        "[::1]:4143".parse().unwrap(),
    ];
    assert_eq!(
        c.outbound.expect("set").listen,
        both,
        "both loopbacks, for IPv6 capture"
    );
    assert_eq!(outbound.max_connections, c.max_connections);

    let error = parse_err(&[
        "--controller-ca-file=/ca",
        "--listen=127.0.0.1:4140",
        "--outbound-listen=127.0.0.1:4140",
    ]);
    assert!(matches!(error, ConfigError::OutboundTaken(_)), "{error}");
}

#[test]
fn a_sidecars_namespace_is_optional_and_compared_lowercase() {
    assert_eq!(parse(&["--controller-ca-file=/ca"]).namespace, None);
    assert_eq!(
        parse(&["--controller-ca-file=/ca", "--namespace="]).namespace,
        None,
        "empty is unset"
    );
    let c = parse(&["--controller-ca-file=/ca", "--namespace=Shop"]);
    assert_eq!(c.namespace.as_deref(), Some("shop"));
}
