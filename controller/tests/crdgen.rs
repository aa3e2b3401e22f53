//! The checked-in `crds/fairway.dev_routes.yaml` is exactly what `crdgen` prints, and the
//! schema in it is one the apiserver accepts (structural) and that rejects what design.md
//! section 3 says it rejects.

use fairway_controller::crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crds/fairway.dev_routes.yaml"
);
const REGENERATE: &str =
    "regenerate with `cargo run -p fairway-controller --bin crdgen > crds/fairway.dev_routes.yaml`";

fn schema() -> Value {
    let crd = serde_json::to_value(crd::crd()).expect("CRD converts to JSON");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_schema() -> Value {
    schema()["properties"]["spec"].clone()
}

fn backend_schema() -> Value {
    spec_schema()["properties"]["rules"]["items"]["properties"]["backends"]["items"].clone()
}

fn pattern(node: &Value) -> regex::Regex {
    let source = node["pattern"].as_str().expect("node has a pattern");
    regex::Regex::new(source).expect("pattern compiles")
}

#[test]
fn checked_in_crd_is_up_to_date() {
    let want = crd::crd_yaml().expect("CRD renders");
    let have = std::fs::read_to_string(CRD_PATH)
        .unwrap_or_else(|e| panic!("reading {CRD_PATH}: {e}; {REGENERATE}"));
    assert!(
        have == want,
        "crds/fairway.dev_routes.yaml differs from what crdgen prints: {REGENERATE}"
    );
}

#[test]
fn rendered_yaml_reads_back_as_the_same_crd() {
    let yaml = crd::crd_yaml().expect("CRD renders");
    assert!(
        yaml.starts_with(crd::CRD_HEADER),
        "the file says how it was made"
    );
    let read: CustomResourceDefinition =
        serde_saphyr::from_str(&yaml).expect("rendered YAML parses as a CRD");
    assert_eq!(read, crd::crd(), "YAML quoting lost or changed something");
}

#[test]
fn names_scope_columns_and_subresources() {
    let crd = crd::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("routes.fairway.dev"));
    assert_eq!(crd.spec.group, "fairway.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "Route");
    assert_eq!(crd.spec.names.short_names, Some(vec!["fwr".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["fairway".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status is a subresource");
    let columns: Vec<(&str, &str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Hosts", "string", ".spec.hosts"),
            ("Ready", "integer", ".status.endpoints.ready"),
            (
                "Accepted",
                "string",
                ".status.conditions[?(@.type==\"Accepted\")].status"
            ),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

/// The apiextensions v1 structural rules kube's derive can get wrong: every node typed
/// (or int-or-string), no `$ref`, no logical junctors, only formats the apiserver knows
/// (others draw "unrecognized format" warnings), patterns that compile.
#[test]
fn schema_is_structural() {
    fn walk(path: &str, node: &Value) {
        let object = node
            .as_object()
            .unwrap_or_else(|| panic!("{path} is not an object"));
        for forbidden in [
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "definitions",
            "$defs",
        ] {
            assert!(!object.contains_key(forbidden), "{path} has {forbidden}");
        }
        let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        assert!(
            object.contains_key("type") != int_or_string,
            "{path} must have a type, or be int-or-string without one"
        );
        if let Some(format) = object.get("format").and_then(Value::as_str) {
            assert!(
                ["int32", "int64", "date-time"].contains(&format),
                "{path} has format {format:?}, which the apiserver does not recognize"
            );
        }
        if object.contains_key("pattern") {
            pattern(node);
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                walk(&format!("{path}.{name}"), child);
            }
        }
        if let Some(items) = object.get("items") {
            walk(&format!("{path}[]"), items);
        }
    }
    walk("openAPIV3Schema", &schema());
}

#[test]
fn spec_has_exactly_the_design_fields() {
    fn keys(node: &Value) -> Vec<&str> {
        node["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect()
    }
    let spec = spec_schema();
    let props = &spec["properties"];
    let mut top = keys(&spec);
    top.sort_unstable();
    assert_eq!(
        top,
        [
            "healthCheck",
            "hosts",
            "loadBalancer",
            "retries",
            "rules",
            "timeouts",
            "upstream"
        ]
    );
    // `match` and `filters`: Gateway API's matches and filters in our Route too
    // (issue 20).
    assert_eq!(
        keys(&props["rules"]["items"]),
        ["backends", "filters", "match", "pathPrefix"]
    );
    assert_eq!(keys(&backend_schema()), ["port", "service", "weight"]);
    assert_eq!(
        keys(&props["loadBalancer"]),
        ["affinity", "policy", "slowStart", "spillover"]
    );
    // `loadBalancer.affinity`: consistent hashing with bounded loads (issue 18).
    assert_eq!(
        keys(&props["loadBalancer"]["properties"]["affinity"]),
        ["balanceFactor", "cookie", "header", "sourceIP"]
    );
    assert_eq!(
        keys(&props["upstream"]),
        [
            "drainTimeout",
            "idleTimeout",
            "maxConnectionAge",
            "maxConnectionsPerEndpoint",
            "maxRequestsPerConnection",
            "maxUpgradeLifetime",
            "protocol",
            "tls",
            "upgradeIdleTimeout",
            "upgrades"
        ]
    );
    // `perTry` extends design.md section 3 (a silent pod must cost one try, issue 8);
    // `grpcMaximum` caps gRPC deadlines (issue 22).
    assert_eq!(
        keys(&props["timeouts"]),
        ["connect", "grpcMaximum", "perTry", "request"]
    );
    // `grpcStatuses`: gRPC status-aware retries (issue 22).
    assert_eq!(
        keys(&props["retries"]),
        [
            "attempts",
            "backoff",
            "budgetPercent",
            "grpcStatuses",
            "httpStatuses"
        ]
    );
    // `healthCheck`: active gRPC health checks (issue 22).
    assert_eq!(keys(&props["healthCheck"]), ["grpc"]);
    assert_eq!(
        keys(&props["healthCheck"]["properties"]["grpc"]),
        [
            "healthyThreshold",
            "interval",
            "service",
            "timeout",
            "unhealthyThreshold"
        ]
    );
    let status = &schema()["properties"]["status"];
    assert_eq!(
        keys(status),
        ["conditions", "endpoints", "observedGeneration"]
    );
    assert_eq!(
        keys(&status["properties"]["endpoints"]),
        ["ready", "serving", "total"]
    );
    assert_eq!(
        status["properties"]["conditions"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"]),
        "conditions merge by type"
    );
}

#[test]
fn schema_rejects_empty_lists() {
    let spec = spec_schema();
    assert_eq!(spec["required"], serde_json::json!(["hosts", "rules"]));
    assert_eq!(spec["properties"]["hosts"]["minItems"], 1);
    assert_eq!(spec["properties"]["rules"]["minItems"], 1);
    let rule = &spec["properties"]["rules"]["items"];
    // Backends may be absent (beside a redirect: the controller checks that), never [].
    assert_eq!(rule["properties"]["backends"]["minItems"], 1);
    assert_eq!(rule["required"], serde_json::Value::Null);
    assert_eq!(rule["properties"]["pathPrefix"]["default"], "/");
}

#[test]
fn schema_accepts_only_lowercase_dns_hosts() {
    let host = &spec_schema()["properties"]["hosts"]["items"];
    let re = pattern(host);
    for good in [
        "orders",
        "orders.shop",
        "orders.shop.svc.cluster.local",
        "a-b.c1",
        "1a",
    ] {
        assert!(re.is_match(good), "{good:?} is a valid host");
    }
    for bad in [
        "",
        "Orders.shop",
        "orders:8080",
        "http://orders",
        "orders shop",
        "*.shop",
        "-orders",
        "orders-",
        "orders.",
        ".orders",
        "orders..shop",
        "orders/x",
    ] {
        assert!(!re.is_match(bad), "{bad:?} must be rejected");
    }
    assert_eq!(host["maxLength"], 253);
}

#[test]
fn schema_rejects_malformed_durations() {
    let props = spec_schema()["properties"].clone();
    let durations = [
        &props["loadBalancer"]["properties"]["slowStart"],
        &props["upstream"]["properties"]["idleTimeout"],
        &props["upstream"]["properties"]["maxConnectionAge"],
        &props["timeouts"]["properties"]["request"],
        &props["timeouts"]["properties"]["connect"],
    ];
    for node in durations {
        let re = pattern(node);
        for good in ["250ms", "30s", "5m", "1h", "1m30s", "1.5s", "0s"] {
            assert!(re.is_match(good), "{good:?} is a duration");
            assert!(crd::parse_duration(good).is_ok(), "and the parser agrees");
        }
        for bad in ["", "30", "s", "30 s", "1d", "-1s", "1.s", "30S", "PT30S"] {
            assert!(!re.is_match(bad), "{bad:?} must be rejected");
            assert!(crd::parse_duration(bad).is_err(), "and the parser agrees");
        }
    }
}

#[test]
fn schema_bounds_weights_ports_and_enums() {
    let backend = backend_schema();
    let weight = &backend["properties"]["weight"];
    assert_eq!(weight["minimum"], 0.0);
    assert_eq!(weight["maximum"], 1_000_000.0);
    assert_eq!(weight["default"], 1);
    assert_eq!(backend["required"], serde_json::json!(["port", "service"]));

    let port = &backend["properties"]["port"];
    assert_eq!(port["x-kubernetes-int-or-string"], true);
    assert_eq!(
        (port["minimum"].clone(), port["maximum"].clone()),
        (1.0.into(), 65535.0.into())
    );
    let name = pattern(port);
    assert!(name.is_match("http") && name.is_match("grpc-web"));
    assert!(!name.is_match("HTTP") && !name.is_match("") && !name.is_match("-x"));

    let props = spec_schema()["properties"].clone();
    assert_eq!(
        props["loadBalancer"]["properties"]["policy"]["enum"],
        serde_json::json!(["RoundRobin", "LeastRequest", "PeakEwma", "Prequal"])
    );
    assert_eq!(
        props["upstream"]["properties"]["protocol"]["enum"],
        serde_json::json!(["Auto", "HTTP1", "HTTP2"])
    );
}
