"""gRPC pods and clients for tests/tests/grpc, from Python `grpcio` (a gRPC no one on the
project wrote). Messages are raw bytes holding JSON, so no .proto is compiled.

    peer.py serve NAME IP PORT
        A pod. Methods of service `test.T`:
          Sleep   {"ms": N}: sleeps N ms (in 10 ms steps, watching for the caller's
                  cancel), answers {"pod": NAME}; a cancelled call is counted.
          Fail    {"code": "UNAVAILABLE", "pushback_ms": N?, "only": NAME?}: ends
                  with that status (and `grpc-retry-pushback-ms` when given), or, when
                  `only` names another pod, answers {"pod": NAME}; counted per pod.
          Stream  {"n": N, "ms": M}: server streaming, N messages M ms apart.
          Stats   {}: {"pod": NAME, "cancelled": C, "fail_calls": F, "sleep_calls": S}.
          SetHealth {"status": "NOT_SERVING", "service": ""?}: sets what the pod's
                  standard health service (grpcio-health-checking's own servicer,
                  grpc.health.v1.Health) answers for that service; starts SERVING.
    peer.py call TARGET AUTHORITY METHOD JSON TIMEOUT_S
        One unary call (TIMEOUT_S 0: no deadline). Prints one JSON line: code, details,
        the reply (parsed) and the trailing metadata.
    peer.py drained TARGET AUTHORITY JSON
        A server-streaming call that prints {"first": POD} at its first message, then,
        when it ends, calls once more as a client retrying UNAVAILABLE would, and prints
        code, details, trailers, messages and the retry's code and pod.
    peer.py stream TARGET AUTHORITY JSON KILL_PID
        A server-streaming call; after the first message sends SIGKILL to KILL_PID (the
        pod), then reads on. Prints code, details and how many messages arrived.
"""

import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "test.T"


class Pod:
    def __init__(self, name, health_servicer):
        self.name = name
        self.health = health_servicer
        self.lock = threading.Lock()
        self.cancelled = 0
        self.fail_calls = 0
        self.sleep_calls = 0

    def sleep(self, request, context):
        ask = json.loads(request or b"{}")
        with self.lock:
            self.sleep_calls += 1
        end = time.monotonic() + ask.get("ms", 0) / 1000
        while time.monotonic() < end:
            if not context.is_active():
                with self.lock:
                    self.cancelled += 1
                return b""
            time.sleep(0.01)
        return json.dumps({"pod": self.name}).encode()

    def fail(self, request, context):
        ask = json.loads(request or b"{}")
        with self.lock:
            self.fail_calls += 1
        if ask.get("only", self.name) != self.name:
            return json.dumps({"pod": self.name}).encode()
        if "pushback_ms" in ask:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(ask["pushback_ms"])),))
        context.abort(getattr(grpc.StatusCode, ask["code"]), f"{self.name} failed on purpose")

    def stream(self, request, context):
        ask = json.loads(request or b"{}")
        for i in range(ask.get("n", 1)):
            yield json.dumps({"pod": self.name, "i": i}).encode()
            time.sleep(ask.get("ms", 0) / 1000)

    def set_health(self, request, context):
        ask = json.loads(request or b"{}")
        status = getattr(health_pb2.HealthCheckResponse, ask["status"])
        self.health.set(ask.get("service", ""), status)
        return json.dumps({"pod": self.name, "status": ask["status"]}).encode()

    def stats(self, request, context):
        with self.lock:
            return json.dumps(
                {
                    "pod": self.name,
                    "cancelled": self.cancelled,
                    "fail_calls": self.fail_calls,
                    "sleep_calls": self.sleep_calls,
                }
            ).encode()


def serve(name, ip, port):
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    pod = Pod(name, servicer)
    handlers = {
        "SetHealth": grpc.unary_unary_rpc_method_handler(pod.set_health),
        "Sleep": grpc.unary_unary_rpc_method_handler(pod.sleep),
        "Fail": grpc.unary_unary_rpc_method_handler(pod.fail),
        "Stream": grpc.unary_stream_rpc_method_handler(pod.stream),
        "Stats": grpc.unary_unary_rpc_method_handler(pod.stats),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"{ip}:{port}")
    server.start()
    print(f"{name} serving on {ip}:{port}", flush=True)
    server.wait_for_termination()


def channel(target, authority):
    # No proxy from the environment and no retries of grpcio's own: the test sees what
    # the proxy did.
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.default_authority", authority),
            ("grpc.enable_http_proxy", 0),
            ("grpc.enable_retries", 0),
        ],
    )


def outcome(error):
    return {
        "code": error.code().name,
        "details": error.details(),
        "trailers": {k: v for k, v in (error.trailing_metadata() or ())},
        "headers": {k: v for k, v in (error.initial_metadata() or ())},
    }


def call(target, authority, method, body, timeout):
    with channel(target, authority) as ch:
        rpc = ch.unary_unary(f"/{SERVICE}/{method}")
        started = time.monotonic()
        try:
            reply, info = rpc.with_call(
                body.encode(), timeout=float(timeout) if float(timeout) > 0 else None
            )
            out = {
                "code": "OK",
                "reply": json.loads(reply or b"{}"),
                "trailers": {k: v for k, v in (info.trailing_metadata() or ())},
            }
        except grpc.RpcError as error:
            out = outcome(error)
        out["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(out), flush=True)


def stream(target, authority, body, kill_pid):
    with channel(target, authority) as ch:
        rpc = ch.unary_stream(f"/{SERVICE}/Stream")
        got = 0
        try:
            for _ in rpc(body.encode(), timeout=30):
                got += 1
                if got == 1:
                    os.kill(int(kill_pid), signal.SIGKILL)
            out = {"code": "OK"}
        except grpc.RpcError as error:
            out = outcome(error)
        out["messages"] = got
        print(json.dumps(out), flush=True)


def drained(target, authority, body):
    with channel(target, authority) as ch:
        rpc = ch.unary_stream(f"/{SERVICE}/Stream")
        got, first = 0, None
        try:
            for message in rpc(body.encode(), timeout=600):
                got += 1
                if first is None:
                    first = json.loads(message)["pod"]
                    print(json.dumps({"first": first}), flush=True)
            out = {"code": "OK"}
        except grpc.RpcError as error:
            out = outcome(error)
        out["messages"] = got
        retry = {}
        try:
            for message in rpc(json.dumps({"n": 1}).encode(), timeout=10):
                retry = {"code": "OK", "pod": json.loads(message)["pod"]}
        except grpc.RpcError as error:
            retry = outcome(error)
        out["retry"] = retry
        print(json.dumps(out), flush=True)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "serve":
        serve(*args)
    elif mode == "call":
        call(*args)
    elif mode == "stream":
        stream(*args)
    elif mode == "drained":
        drained(*args)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
