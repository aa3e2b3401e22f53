"""Real WebSocket and server-sent-event peers for tests/tests/upgrade (the `websockets`
package and Python's `h2`, in the test venv). Run by the Rust tests, never by hand.

Pods:
  serve NAME HOST PORT   a WebSocket server: echoes every message; "who" answers NAME;
                         "close" makes it close the connection (code 1000).
  serve-h2 NAME HOST PORT
                         the same over HTTP/2 (h2c prior knowledge) only, WebSockets by
                         RFC 8441 extended CONNECT: Hypercorn, an ASGI server.
  sse HOST PORT          GET /events streams an event every 100 ms for 5 s, each one only
                         after the client acknowledged the previous one (GET /ack?n=N).
Clients (each prints one JSON line and exits 0, or prints the failure and exits 1):
  echo PROXY HOST        small and 1 MiB echoes, ping/pong, quiet past the HTTP idle
                         timeout, a server-initiated close, a TCP half-close.
  spread PROXY HOST N    N WebSockets at once; which pod each reached.
  least PROXY HOST FIRST SRC DST THEN
                         FIRST WebSockets (while one pod exists), then renames SRC to DST
                         (the slice gains pods) and opens THEN more: pods of each batch.
  drain PROXY HOST N SRC DST
                         N WebSockets, then renames SRC to DST (their pods change) and
                         waits for the ones to the changed pods to close.
  kill PROXY HOST N PID  N WebSockets, kills pod PID; its clients see the close and
                         reconnect elsewhere.
  h2 PROXY HOST          RFC 8441: an extended CONNECT over h2c, WebSocket frames made
                         with websockets' frame objects.
  sse PROXY HOST         reads /events through the proxy, acknowledging each event.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import time
import urllib.parse

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

TIMEOUT = 20  # seconds: generous for a loaded 2-core machine


def fail(message):
    print(json.dumps({"error": message}), flush=True)
    sys.exit(1)


def done(result):
    print(json.dumps(result), flush=True)


def host_port(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


# Pods ------------------------------------------------------------------------------------


async def ws_pod(name, host, port):
    async def handler(ws):
        async for message in ws:
            if message == "who":
                await ws.send(name)
            elif message == "close":
                await ws.close(1000, "bye")
                return
            else:
                await ws.send(message)

    async with serve(handler, host, int(port), max_size=None, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


async def h2_pod(name, host, port):
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                reply = name if text == "who" else text
                await send({"type": "websocket.send", "text": reply})
        else:
            # Plain requests name the HTTP version, so a test can see it spoke HTTP/2.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["http_version"].encode()})

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    print("ready", flush=True)
    await hypercorn_serve(app, config)


async def sse_pod(host, port):
    acked = {}

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        url = urllib.parse.urlsplit(target)
        if url.path == "/ack":
            n = int(urllib.parse.parse_qs(url.query)["n"][0])
            acked.setdefault(n, asyncio.Event()).set()
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        n = 0
        started = time.monotonic()
        while time.monotonic() - started < 5:
            event = f"id: {n}\ndata: event {n}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            # The next event is written only after the client saw this one: a proxy
            # that buffers would stall the stream here.
            try:
                await asyncio.wait_for(acked.setdefault(n, asyncio.Event()).wait(), 5)
            except asyncio.TimeoutError:
                break
            n += 1
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# Clients ---------------------------------------------------------------------------------


def ws_connect(proxy, host, **kwargs):
    phost, pport = host_port(proxy)
    return connect(
        f"ws://{host}/chat",
        host=phost,
        port=pport,
        open_timeout=TIMEOUT,
        max_size=None,
        ping_interval=None,
        **kwargs,
    )


async def who(ws):
    await ws.send("who")
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def echo(proxy, host):
    result = {}
    async with ws_connect(proxy, host) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello", "small echo"
        big = os.urandom(1 << 20)
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == big, "1 MiB echo"
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, TIMEOUT)
        # Quiet for longer than the Route's HTTP idleTimeout (1 s in the test Route).
        await asyncio.sleep(2.5)
        await ws.send("still here")
        assert await ws.recv() == "still here", "echo after a quiet spell"
        result["pod"] = await who(ws)
        await ws.send("close")
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            fail("the pod's close did not reach the client")
        except ConnectionClosed as closed:
            result["close_code"] = closed.rcvd.code if closed.rcvd else None
    result["half_close"] = half_close(proxy, host)
    done(result)


def half_close(proxy, host):
    """A raw socket: handshake, one text frame, then shutdown(SHUT_WR). The echo must
    still arrive after the half-close."""
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    protocol = ClientProtocol(parse_uri(f"ws://{host}/chat"))
    sock = socket.create_connection(host_port(proxy), timeout=TIMEOUT)
    request = protocol.connect()
    protocol.send_request(request)
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
        data = sock.recv(65536)
        if not data:
            return "closed before the handshake"
        protocol.receive_data(data)
    if protocol.handshake_exc is not None:
        return f"handshake failed: {protocol.handshake_exc}"
    protocol.send_text(b"half")
    sock.sendall(b"".join(protocol.data_to_send()))
    sock.shutdown(socket.SHUT_WR)
    got = []
    while True:
        data = sock.recv(65536)
        if not data:
            break
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                got.append(event.data.decode())
    sock.close()
    return got


async def spread(proxy, host, n):
    sockets = [await ws_connect(proxy, host).__aenter__() for _ in range(n)]
    pods = {}
    for ws in sockets:
        pod = await who(ws)
        pods[pod] = pods.get(pod, 0) + 1
    for ws in sockets:
        await ws.close()
    done({"pods": pods})


async def least(proxy, host, first, src, dst, then):
    batch1 = [await ws_connect(proxy, host).__aenter__() for _ in range(first)]
    pods1 = [await who(ws) for ws in batch1]
    os.rename(src, dst)
    # Wait until the new pods are in the proxy's table: a probe connection lands on a
    # new pod (and is closed again, leaving the counts as they were).
    deadline = time.monotonic() + TIMEOUT
    while True:
        async with ws_connect(proxy, host) as probe:
            if await who(probe) not in pods1:
                break
        if time.monotonic() > deadline:
            fail("the new pods never took a WebSocket")
        await asyncio.sleep(0.2)
    batch2 = [await ws_connect(proxy, host).__aenter__() for _ in range(then)]
    pods2 = [await who(ws) for ws in batch2]
    for ws in batch1 + batch2:
        await ws.close()
    count = lambda names: {p: names.count(p) for p in sorted(set(names))}
    done({"first": count(pods1), "then": count(pods2)})


async def wait_closed(ws):
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return


async def drain(proxy, host, n, src, dst):
    sockets = [await ws_connect(proxy, host).__aenter__() for _ in range(n)]
    pods = [await who(ws) for ws in sockets]
    started = time.monotonic()
    os.rename(src, dst)
    # Which pods changed is the caller's to say; here: wait for every socket that
    # closes within the timeout, report which pods those were and which stayed open.
    waits = {i: asyncio.ensure_future(wait_closed(ws)) for i, ws in enumerate(sockets)}
    await asyncio.wait(waits.values(), timeout=TIMEOUT)
    closed = sorted({pods[i] for i, w in waits.items() if w.done()})
    still_open = sorted({pods[i] for i, w in waits.items() if not w.done()})
    # Open sockets still echo.
    alive = 0
    for i, w in waits.items():
        if not w.done():
            w.cancel()
            try:
                await w
            except asyncio.CancelledError:
                pass
            await sockets[i].send("ping")
            if await asyncio.wait_for(sockets[i].recv(), TIMEOUT) == "ping":
                alive += 1
            await sockets[i].close()
    done(
        {
            "closed_pods": closed,
            "open_pods": still_open,
            "alive": alive,
            "seconds_to_close": round(time.monotonic() - started, 2),
        }
    )


async def kill(proxy, host, n, pid):
    sockets = [await ws_connect(proxy, host).__aenter__() for _ in range(n)]
    pods = [await who(ws) for ws in sockets]
    os.kill(pid, signal.SIGKILL)
    victims = []
    for i, ws in enumerate(sockets):
        try:
            await ws.send("ping")
            await asyncio.wait_for(ws.recv(), 2)
        except (ConnectionClosed, asyncio.TimeoutError):
            victims.append(i)
    # The victims' sockets close (the pod's reset reaches the client); reconnecting
    # lands on the pods that are left.
    for i in victims:
        await asyncio.wait_for(wait_closed(sockets[i]), TIMEOUT)
    landed = []
    for _ in victims:
        async with ws_connect(proxy, host) as ws:
            landed.append(await who(ws))
    for i, ws in enumerate(sockets):
        if i not in victims:
            await ws.close()
    done({"victim_pods": sorted({pods[i] for i in victims}), "reconnected_to": landed})


def h2(proxy, host):
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    sock = socket.create_connection(host_port(proxy), timeout=TIMEOUT)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    enabled = None
    while enabled is None:
        for event in conn.receive_data(sock.recv(65536)):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                setting = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                enabled = bool(setting and setting.new_value)
        sock.sendall(conn.data_to_send())
    if not enabled:
        fail("the proxy does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL")
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/chat"),
            (":authority", host),
            ("sec-websocket-version", "13"),
        ],
    )
    sock.sendall(conn.data_to_send())
    status = None
    reader = StreamReader()
    messages = []

    def pump():
        nonlocal status
        for event in conn.receive_data(sock.recv(65536)):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                reader.feed_data(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamReset):
                fail(f"the proxy reset the stream: {event.error_code}")
        sock.sendall(conn.data_to_send())

    while status is None:
        pump()
    if status != "200":
        fail(f"extended CONNECT answered {status}")
    for text in ["hello over h2", "who"]:
        frame = Frame(Opcode.TEXT, text.encode())
        conn.send_data(stream, frame.serialize(mask=True))
        sock.sendall(conn.data_to_send())
        while True:
            parser = Frame.parse(reader.read_exact, mask=False)
            try:
                # StreamReader's read_exact is a generator that waits for more data.
                while True:
                    next(parser)
                    pump()
            except StopIteration as stop:
                messages.append(stop.value.data.decode())
                break
    sock.close()
    done({"status": status, "messages": messages})


async def sse(proxy, host):
    phost, pport = host_port(proxy)
    reader, writer = await asyncio.open_connection(phost, pport)
    writer.write(f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status = int(head.split(b" ")[1])
    started = time.monotonic()
    events = 0
    buffer = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        size = int(line.strip() or b"0", 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        buffer += chunk[:-2]
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            n = int(event.split(b"\n")[0].split(b": ")[1])
            events += 1
            ack_r, ack_w = await asyncio.open_connection(phost, pport)
            ack_w.write(f"GET /ack?n={n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await ack_w.drain()
            await asyncio.wait_for(ack_r.read(), TIMEOUT)
            ack_w.close()
    writer.close()
    done({"status": status, "events": events, "seconds": round(time.monotonic() - started, 2)})


def main():
    command, args = sys.argv[1], sys.argv[2:]
    try:
        if command == "serve":
            asyncio.run(ws_pod(*args))
        elif command == "sse":
            asyncio.run(sse_pod(*args))
        elif command == "serve-h2":
            asyncio.run(h2_pod(*args))
        elif command == "echo":
            asyncio.run(echo(*args))
        elif command == "spread":
            asyncio.run(spread(args[0], args[1], int(args[2])))
        elif command == "least":
            asyncio.run(least(args[0], args[1], int(args[2]), args[3], args[4], int(args[5])))
        elif command == "drain":
            asyncio.run(drain(args[0], args[1], int(args[2]), args[3], args[4]))
        elif command == "kill":
            asyncio.run(kill(args[0], args[1], int(args[2]), int(args[3])))
        elif command == "h2":
            h2(*args)
        elif command == "sse-client":
            asyncio.run(sse(*args))
        else:
            fail(f"unknown command {command}")
    except AssertionError as e:
        fail(f"assertion failed: {e}")
    except Exception as e:  # the Rust side shows it with the test's name
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
