//! The wired process: a scripted controller feeds it, the admin port reports it, and a
//! shutdown stops every part.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::config::LogFormat;
use crate::discovery::testing::{Controller, WAIT, snapshot, table, v};

fn config(controller: SocketAddr) -> Config {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Config {
        controller: format!("http://{controller}").parse().expect("uri"),
        controller_tls: None,
        controller_token_file: None,
        listen: vec![loopback],
        outbound: None,
        admin_addr: loopback,
        zone: None,
        namespace: None,
        node: "node-a".into(),
        id: "proxy-under-test".into(),
        log_format: LogFormat::Text,
        endpoint_labels: true,
        max_connections: 64,
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        max_headers: 50,
        shutdown_grace: Duration::from_secs(1),
        drain_delay: Duration::ZERO,
        trace: None,
    }
}

/// `GET path` over a fresh connection: (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn turns_ready_with_the_first_table_and_stops_on_shutdown() {
    let mut controller = Controller::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let config = config(controller.addr);
    let listeners = Listeners::bind(&config).await.expect("bind");
    let admin = listeners.admin_addr().expect("admin addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = tokio::spawn(run_on(listeners, config, async {
        let _ = stopped.await;
    }));

    let mut stream = controller.accept().await;
    assert_eq!(stream.hello.proxy_id, "proxy-under-test");
    assert_eq!(get(admin, "/live").await.0, 200);
    assert_eq!(
        get(admin, "/ready").await.0,
        503,
        "not ready before the first table"
    );

    stream.send(snapshot(&table(&["10.0.0.1:80"]), v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    assert_eq!(
        get(admin, "/ready").await.0,
        200,
        "ready once the table is applied"
    );
    let (_, metrics) = get(admin, "/metrics").await;
    assert!(
        metrics.contains("fairway_proxy_table_version 1"),
        "{metrics}"
    );
    let (_, routes) = get(admin, "/debug/routes").await;
    assert!(routes.contains("orders.shop"), "{routes}");

    let _ = stop.send(());
    let result = tokio::time::timeout(WAIT, proxy)
        .await
        .expect("the proxy stops within its grace")
        .expect("proxy task");
    assert!(
        result.is_ok(),
        "a requested shutdown is not an error: {result:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin port is closed after shutdown"
    );
}

#[tokio::test]
async fn a_taken_address_fails_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config = config(SocketAddr::from(([127, 0, 0, 1], 9)));
    config.listen = vec![taken.local_addr().expect("addr")];
    let err = Listeners::bind(&config).await.expect_err("address in use");
    assert!(
        matches!(
            err,
            RunError::Bind {
                flag: "--listen",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn every_listen_address_serves_until_shutdown() {
    let controller = Controller::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let mut config = config(controller.addr);
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    config.listen.push(v6);
    let listeners = Listeners::bind(&config).await.expect("bind");
    let addrs = listeners.proxy_addrs();
    assert_eq!(addrs.len(), 2, "one socket per --listen: {addrs:?}");
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = tokio::spawn(run_on(listeners, config, async {
        let _ = stopped.await;
    }));
    for addr in &addrs {
        let (status, body) = get(*addr, "/").await;
        assert_eq!(
            status, 404,
            "{addr} answers (a host without a Route): {body}"
        );
    }
    let _ = stop.send(());
    let result = tokio::time::timeout(WAIT, proxy)
        .await
        .expect("stops")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    for addr in &addrs {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} is closed after shutdown"
        );
    }
}

#[test]
fn only_a_missing_ipv6_loopback_is_skipped() {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 4140));
    let v4 = SocketAddr::from(([127, 0, 0, 1], 4140));
    let unavailable = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
    let no_family = std::io::Error::from_raw_os_error(97);
    let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
    assert!(no_ipv6_loopback(v6, &unavailable));
    assert!(no_ipv6_loopback(v6, &no_family));
    assert!(!no_ipv6_loopback(v6, &in_use), "a taken port is an error");
    assert!(!no_ipv6_loopback(v4, &unavailable), "only ::1 is optional");
    let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 4140));
    assert!(!no_ipv6_loopback(any6, &unavailable));
}
