//! Non-HTTP protocols on the ports of a Service the proxy knows (its ClusterIP is in the
//! table, and it is served implicitly): detection reads them under its deadline, finds
//! no HTTP to balance, and passes them through with the bytes it read. A line-echo
//! client (it speaks first), a server-speaks-first protocol (detection must give up and
//! let the greeting through) and an HTTP request whose `Host` no Route claims (passed
//! through, never answered `404`) all work unchanged.
//!
//! With no kube-proxy in the namespace, the servers bind the ClusterIP itself, standing
//! in for the pod kube-proxy would have sent the connection to.

use std::io::{BufRead, BufReader, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use fairway_tests::bins;

use super::balance::{
    CONTROLLER_GRPC, Killed, outbound_connections, ready, spawn, write_atomically,
};
use super::{
    IO_LIMIT, Proxy, capture, connect, echo_exchange, greeter, in_netns, line_echo, server,
};

const CLUSTER_IP: &str = "10.96.0.30";

const STATICS: &str = "apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop, labels: {fairway.dev/implicit: enabled}}
spec:
  clusterIP: 10.96.0.30
  clusterIPs: [10.96.0.30]
  ports:
  - {name: echo, port: 7000, protocol: TCP}
  - {name: smtp, port: 2525, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-abc12, namespace: shop, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
ports:
- {name: echo, port: 7000, protocol: TCP}
- {name: smtp, port: 2525, protocol: TCP}
endpoints:
- addresses: [\"10.244.0.9\"]
  conditions: {ready: true, serving: true, terminating: false}
";

#[test]
fn non_http_on_a_known_services_ports_passes_through_after_detection() {
    in_netns(
        "known::non_http_on_a_known_services_ports_passes_through_after_detection",
        || {
            let echo = format!("{CLUSTER_IP}:7000");
            let smtp = format!("{CLUSTER_IP}:2525");
            let peers = server(&echo, line_echo);
            let _greeter = server(&smtp, greeter);
            let dir = tempfile::tempdir().expect("tempdir");
            let statics = dir.path().join("statics");
            std::fs::create_dir(&statics).expect("statics dir");
            write_atomically(&statics.join("legacy.yaml"), STATICS);
            let controller_log = dir.path().join("controller.log");
            let _controller: Killed = spawn(
                &bins::binary("fairway-controller"),
                &[
                    &format!("--static-dir={}", statics.display()),
                    &format!("--grpc-addr={CONTROLLER_GRPC}"),
                    "--admin-addr=127.0.0.1:19090",
                    "--no-auth",
                    "--log-format=text",
                ],
                &[],
                &controller_log,
            );
            capture("install");
            let mut proxy =
                Proxy::start_with(&["--controller", &format!("http://{CONTROLLER_GRPC}")]);
            let deadline = Instant::now() + IO_LIMIT;
            while !ready() {
                assert!(
                    Instant::now() < deadline,
                    "the proxy got no table:\n{}",
                    proxy.log_text()
                );
                thread::sleep(Duration::from_millis(50));
            }

            let client =
                echo_exchange(&echo).unwrap_or_else(|e| panic!("echo: {e}\n{}", proxy.log_text()));
            let peer = peers
                .recv_timeout(IO_LIMIT)
                .expect("the echo server got the connection");
            assert_ne!(peer, client, "through the proxy, not around it");

            // The server speaks first: detection waits for client bytes that never come,
            // gives up at its deadline, and the greeting flows.
            let conn = connect(&smtp).expect("connect");
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut greeting = String::new();
            reader
                .read_line(&mut greeting)
                .unwrap_or_else(|e| panic!("the greeting arrives: {e}\n{}", proxy.log_text()));
            assert_eq!(greeting, "220 fairway-test ready\r\n");
            (&conn).write_all(b"QUIT\r\n").expect("QUIT");
            let mut rest = String::new();
            reader
                .read_to_string(&mut rest)
                .expect("the answer and the close");
            assert_eq!(rest, "221 bye\r\n");

            // HTTP whose Host no Route claims: passed through (here, echoed), never a 404.
            let mut conn = connect(&echo).expect("connect");
            conn.write_all(b"GET / HTTP/1.1\r\nHost: elsewhere\r\n\r\n")
                .expect("request");
            conn.shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            let mut echoed = String::new();
            conn.read_to_string(&mut echoed).expect("echoed");
            assert_eq!(
                echoed, "GET / HTTP/1.1\nHost: elsewhere\n\n",
                "the request reached the echo server as sent"
            );
            proxy.assert_running();
            // The connections took the known-Service path (detection, then pass-through),
            // not the unknown-destination one.
            assert_eq!(
                outbound_connections("detected_pass_through"),
                3,
                "{}",
                proxy.log_text()
            );
            assert_eq!(outbound_connections("unknown_pass_through"), 0);
            assert_eq!(outbound_connections("balanced"), 0);
        },
    );
}
