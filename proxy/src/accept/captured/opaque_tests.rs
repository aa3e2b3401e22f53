//! Pass-through over real loopback sockets: bytes, half-close and errors as a client
//! would see them without the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Copied, PassError, pass_through};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A "proxy" that passes its one accepted connection through to `dest`, sending
/// `prefix` first; returns its address and the pass-through's result.
async fn proxy_once(
    dest: SocketAddr,
    prefix: &'static [u8],
) -> (SocketAddr, JoinHandle<Result<Copied, PassError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        pass_through(client, prefix, dest, CONNECT_TIMEOUT).await
    });
    (addr, task)
}

#[tokio::test]
async fn bytes_and_a_half_close_travel_both_ways() {
    // The server reads the whole request until the client's FIN, then answers: only a
    // forwarded half-close lets it answer at all.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = server.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (mut conn, _) = server.accept().await.unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).await.unwrap();
        conn.write_all(format!("got {} bytes", request.len()).as_bytes())
            .await
            .unwrap();
        request
    });
    let (proxy, passed) = proxy_once(dest, b"prefix:").await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&body).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();

    let request = served.await.unwrap();
    assert_eq!(&request[..7], b"prefix:", "the detected bytes go first");
    assert_eq!(&request[7..], &body[..], "every byte, in order");
    assert_eq!(
        answer, "got 100007 bytes",
        "the answer after the half-close arrives"
    );
    let copied = passed.await.unwrap().unwrap();
    assert_eq!(
        copied,
        Copied {
            up: 100_007,
            down: 16
        }
    );
}

#[tokio::test]
async fn a_refused_destination_resets_the_client() {
    // A port with nothing listening: bind, note the address, close.
    let dest = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (proxy, passed) = proxy_once(dest, b"").await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let mut buf = [0; 16];
    let read = client.read(&mut buf).await;
    assert!(
        read.is_err(),
        "the client sees a reset, not a clean end of stream: {read:?}"
    );
    assert!(matches!(
        passed.await.unwrap(),
        Err(PassError::Connect { addr, .. }) if addr == dest
    ));
}

#[tokio::test]
async fn a_destination_reset_reaches_the_client_as_a_reset() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = server.accept().await.unwrap();
        let mut line = [0; 5];
        conn.read_exact(&mut line).await.unwrap();
        conn.write_all(b"partial").await.unwrap();
        super::reset(&conn);
    });
    let (proxy, passed) = proxy_once(dest, b"").await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    let mut got = Vec::new();
    let ended = client.read_to_end(&mut got).await;
    assert!(
        ended.is_err(),
        "a destination's reset is not turned into a clean close: {ended:?} after {got:?}"
    );
    assert!(matches!(
        passed.await.unwrap(),
        Err(PassError::Destination(_))
    ));
}

#[tokio::test]
async fn a_server_that_speaks_first_is_heard_without_client_bytes() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = server.accept().await.unwrap();
        conn.write_all(b"220 ready\r\n").await.unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
    });
    let (proxy, _passed) = proxy_once(dest, b"").await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let mut greeting = [0; 11];
    client.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"220 ready\r\n");
}
