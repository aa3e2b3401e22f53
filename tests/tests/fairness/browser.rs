//! A real headless browser: Debian's `chromium`, driven over the Chrome DevTools
//! Protocol (a WebSocket per page) to load a page, read its DOM and take screenshots.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fairway_tests::bins::{free_port, loopback};
use fairway_tests::process::Managed;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Start-up of the browser and one DevTools command.
const STEP: Duration = Duration::from_secs(30);

/// Where Debian puts it (`apt-get install chromium`; tests/run.sh installs it as root).
fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "chromium is missing: the live page is tested in a real headless browser. \
             Install it (Debian: sudo apt-get install -y chromium), or run tests/run.sh as root"
        )
    })
}

/// A headless chromium process, killed (with its whole process group) when dropped.
pub struct Browser {
    process: Managed,
    devtools: SocketAddr,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.process.kill();
    }
}

impl Browser {
    pub async fn start(log_dir: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("browser profile: {e}"));
        let devtools = loopback(free_port());
        let args = [
            "--headless=new".to_owned(),
            // Root in a container has no user namespace for chromium's sandbox.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--remote-debugging-port={}", devtools.port()),
            format!("--user-data-dir={}", profile.path().display()),
            "about:blank".to_owned(),
        ];
        let process = Managed::spawn("chromium", &chromium(), &args, log_dir.join("chromium.log"))
            .unwrap_or_else(|e| panic!("start chromium: {e}"));
        let mut browser = Browser {
            process,
            devtools,
            _profile: profile,
        };
        let deadline = Instant::now() + STEP;
        while TcpStream::connect(devtools).await.is_err() {
            if let Err(e) = browser.process.check_running() {
                panic!("{e}");
            }
            assert!(
                Instant::now() < deadline,
                "chromium's DevTools never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        browser
    }

    /// Opens `url` in a new tab and attaches to it.
    pub async fn open(&mut self, url: &str) -> Page {
        // DevTools builds the WebSocket URL from the Host header.
        let request = format!(
            "PUT /json/new?{url} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.devtools
        );
        let answer = raw(self.devtools, &request).await;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let target: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("DevTools /json/new: {e}: {answer}"));
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl: {target}"));
        let (socket, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(ws))
            .await
            .expect("DevTools WebSocket within the step")
            .unwrap_or_else(|e| panic!("DevTools WebSocket {ws}: {e}"));
        Page { socket, next: 0 }
    }
}

async fn raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("DevTools {addr}: {e}"));
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("DevTools request: {e}"));
    // DevTools keeps the connection open: read the head, then Content-Length bytes.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + STEP;
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return text,
        }
    }
}

/// One tab, over its DevTools WebSocket.
pub struct Page {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    /// Sends one DevTools command and returns its `result`, skipping events.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let command = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::text(command))
            .await
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within {STEP:?}"))
                .unwrap_or_else(|| panic!("{method}: DevTools closed"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            if reply["id"] != id {
                continue;
            }
            assert!(reply["error"].is_null(), "{method} failed: {reply}");
            return reply["result"].clone();
        }
    }

    /// The value of the JavaScript `expression` in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression} threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Renders as a phone does: 412 x 915 CSS pixels at 2x, touch, mobile viewport.
    pub async fn as_phone(&mut self) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 412, "height": 915, "deviceScaleFactor": 2, "mobile": true}),
        )
        .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let result = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = result["data"].as_str().expect("base64 PNG data");
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("screenshot base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
