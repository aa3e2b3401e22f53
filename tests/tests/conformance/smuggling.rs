//! Request-smuggling shapes over raw sockets (CL.TE, TE.CL, duplicate Content-Length,
//! obfuscated Transfer-Encoding, TE in HTTP/1.0, obs-fold, bare LF, NUL, oversized chunk
//! sizes). Each case hides a second request, `GET /smuggled`, where a parser that
//! disagrees with the proxy's would see it as a request of its own.
//!
//! "Smuggled" means the backend received a request the client got no answer for: the
//! proxy and the backend disagreed about where a request ends. The backend records
//! what it received, and counts every answer it sent (its header), so the test compares
//! both sides.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{BACKEND_HEADER, Received};
use crate::stack::{Stack, status_of};

/// The hidden second request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h1.test\r\n\r\n";
/// Quiet time after which a connection the proxy keeps open counts as answered.
const IDLE: Duration = Duration::from_secs(2);
/// Time for a forwarded request to be recorded by the backend after the client's read.
const SETTLE: Duration = Duration::from_millis(300);

/// What the proxy must do with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `400` (or a close without an answer) and nothing reaches the backend.
    Reject,
    /// `400`, or a handling both sides agree on: every request the backend got was
    /// answered to the client, and none carried conflicting framing.
    RejectOrConsistent,
    /// A head that is fine and a body that is not: the head may reach the backend, the
    /// hidden request must not, and the client gets no 2xx.
    BrokenBody,
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

fn case(name: &'static str, head: &str, body: &str, expect: Expect) -> Case {
    Case {
        name,
        bytes: format!("{head}{body}").into_bytes(),
        expect,
    }
}

/// `len` as the chunk-size line of a chunk carrying `text`.
fn chunk(text: &str) -> String {
    format!("{:x}\r\n{text}\r\n", text.len())
}

pub fn cases() -> Vec<Case> {
    use Expect::*;
    let post = "POST / HTTP/1.1\r\nHost: h1.test\r\n";
    let smuggled_len = SMUGGLED.len();
    let mut all = vec![
        // Content-Length with Transfer-Encoding: RFC 9112 6.1 allows "chunked wins"
        // (then closing) or a 400. The proxy answers 400 on a fresh connection (see
        // proxy/tests/hostile.rs) and hyper's "chunked wins" on one it took over, so both
        // are accepted here, as long as nothing is smuggled.
        case(
            "CL.TE",
            &format!("{post}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            RejectOrConsistent,
        ),
        case(
            "TE.CL",
            &format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"),
            &format!("{}0\r\n\r\n", chunk(SMUGGLED)),
            RejectOrConsistent,
        ),
        case(
            "duplicate differing Content-Length",
            &format!("{post}Content-Length: 0\r\nContent-Length: {smuggled_len}\r\n\r\n"),
            SMUGGLED,
            Reject,
        ),
        case(
            "Content-Length list 0, N",
            &format!("{post}Content-Length: 0, {smuggled_len}\r\n\r\n"),
            SMUGGLED,
            Reject,
        ),
        case(
            "Content-Length with a sign",
            &format!("{post}Content-Length: +{smuggled_len}\r\n\r\n"),
            SMUGGLED,
            Reject,
        ),
        case(
            "Transfer-Encoding: xchunked",
            &format!("{post}Transfer-Encoding: xchunked\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            &format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "Transfer-Encoding twice (chunked, then x)",
            &format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "space before the colon (Transfer-Encoding : chunked)",
            &format!("{post}Transfer-Encoding : chunked\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "vertical tab before chunked",
            &format!("{post}Transfer-Encoding:\x0bchunked\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; the server
        // must close after it. A 400 or a consistent single answer both qualify.
        case(
            "Transfer-Encoding in HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n",
            &format!("0\r\n\r\n{SMUGGLED}"),
            RejectOrConsistent,
        ),
        case(
            "obs-fold of Transfer-Encoding",
            &format!("{post}Transfer-Encoding:\r\n chunked\r\n\r\n"),
            &format!("0\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "obs-fold of another header",
            "GET / HTTP/1.1\r\nHost: h1.test\r\nX-Folded: a\r\n b\r\n\r\n",
            SMUGGLED,
            Reject,
        ),
        // RFC 9112 2.2 lets a recipient take a bare LF as a line end: a 400 or a
        // consistent reading both qualify; the hidden request must not get through.
        case(
            "bare LF before Content-Length",
            &format!(
                "GET / HTTP/1.1\r\nHost: h1.test\r\nX: a\nContent-Length: {smuggled_len}\r\n\r\n"
            ),
            SMUGGLED,
            RejectOrConsistent,
        ),
        case(
            "bare LF line ends throughout",
            "POST / HTTP/1.1\nHost: h1.test\nContent-Length: 6\nTransfer-Encoding: chunked\n\n",
            &format!("0\r\n\r\n{SMUGGLED}"),
            RejectOrConsistent,
        ),
        case(
            "NUL in a header value",
            "GET / HTTP/1.1\r\nHost: h1.test\r\nX-Nul: a\0b\r\n\r\n",
            SMUGGLED,
            Reject,
        ),
        case(
            "NUL in a header name",
            "GET / HTTP/1.1\r\nHost: h1.test\r\nX-N\0ul: a\r\n\r\n",
            SMUGGLED,
            Reject,
        ),
        case(
            "oversized chunk size",
            &format!("{post}Transfer-Encoding: chunked\r\n\r\n"),
            &format!("FFFFFFFFFFFFFFFFFFFF\r\n{SMUGGLED}"),
            BrokenBody,
        ),
        case(
            "chunk size wrapping at 2^64",
            &format!("{post}Transfer-Encoding: chunked\r\n\r\n"),
            &format!("10000000000000001\r\nx\r\n0\r\n\r\n{SMUGGLED}"),
            BrokenBody,
        ),
    ];
    // A Content-Length far beyond any body: the proxy waits for it and must not take
    // the next bytes as a request.
    all.push(case(
        "huge Content-Length",
        &format!("{post}Content-Length: 99999999999999999999\r\n\r\n"),
        SMUGGLED,
        Reject,
    ));
    all
}

/// What the client saw.
#[derive(Debug)]
pub struct Seen {
    pub status: Option<u16>,
    /// Answers that came from the backend (its header), however many.
    pub backend_answers: usize,
    pub bytes: usize,
}

/// Sends `bytes`, reads until the proxy closes or stays quiet for [`IDLE`].
async fn send(addr: SocketAddr, bytes: &[u8]) -> Seen {
    let mut response = Vec::new();
    if let Ok(mut stream) = TcpStream::connect(addr).await
        && stream.write_all(bytes).await.is_ok()
    {
        let mut buf = [0u8; 8192];
        while let Ok(Ok(n)) = tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    Seen {
        status: status_of(&response),
        backend_answers: text.matches(&format!("{BACKEND_HEADER}:")).count(),
        bytes: response.len(),
    }
}

/// Runs one case; `Err` says what went wrong.
pub async fn run(stack: &Stack, case: &Case) -> Result<String, String> {
    stack.h1.clear();
    let seen = send(stack.listen, &case.bytes).await;
    tokio::time::sleep(SETTLE).await;
    let received = stack.h1.received();
    let summary = format!(
        "status {:?}, {} response bytes, backend got {:?}",
        seen.status,
        seen.bytes,
        received.iter().map(Received::summary).collect::<Vec<_>>()
    );
    let rejected = seen.status == Some(400) || (seen.status.is_none() && received.is_empty());
    let conflicting = |r: &Received| {
        r.header_count("content-length") > 0 && r.header_count("transfer-encoding") > 0
            || r.header_count("content-length") > 1
    };
    if let Some(r) = received.iter().find(|r| conflicting(r)) {
        return Err(format!(
            "forwarded with conflicting framing {r:?}; {summary}"
        ));
    }
    let ok = match case.expect {
        Expect::Reject => rejected && received.is_empty(),
        Expect::RejectOrConsistent => {
            (rejected && received.is_empty()) || received.len() == seen.backend_answers
        }
        Expect::BrokenBody => {
            !received.iter().any(|r| r.target.contains("smuggled"))
                && !seen.status.is_some_and(|s| (200..300).contains(&s))
        }
    };
    if ok {
        Ok(summary)
    } else {
        Err(format!("expected {:?}: {summary}", case.expect))
    }
}
