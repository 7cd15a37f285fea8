"""Runs a real `sonde serve` (and other processes) for the tests in this folder.

The server binary comes from `$SONDE_BIN` (default: the debug build). Each
server gets free loopback ports and a fresh data directory; its log is kept
in a file and attached to the report of every test that fails while it runs.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable

import requests

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / "target" / "debug" / "sonde"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Processes (Sonde, Prometheus) that are running now; the report of a test
# that fails gets the tail of each one's log.
ACTIVE: list["LoggedProcess"] = []


def free_port() -> int:
    """A port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoggedProcess:
    """A child process whose output goes to a log file."""

    name = "process"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def _spawn(self, argv: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> None:
        self.log_path = log_path
        # Appends, so the log of a restarted process keeps the earlier runs.
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
        ACTIVE.append(self)

    def log_text(self, tail_chars: int = 20000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = ANSI.sub("", self.log_path.read_text(errors="replace"))
        if len(text) > tail_chars:
            text = "[...]\n" + text[-tail_chars:]
        return text

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self in ACTIVE:
            ACTIVE.remove(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs."""
        if self in ACTIVE:
            ACTIVE.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class QueryError(AssertionError):
    pass


class Sonde(LoggedProcess):
    """A running `sonde serve` and the URLs of its three listeners."""

    name = "sonde"

    def __init__(self, extra_args: Iterable[str] = (), command: str = "serve") -> None:
        super().__init__()
        self.command = command
        self.binary = os.environ.get("SONDE_BIN") or str(DEFAULT_BIN)
        if not Path(self.binary).is_file():
            raise FileNotFoundError(
                f"sonde binary not found at {self.binary}; build it with "
                "`cargo build -p sonde-cli` or set SONDE_BIN"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="sonde-test-"))
        self.data_dir = self.tmp / "data"
        self.api_port = free_port()
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.otlp_http_url = f"http://127.0.0.1:{self.http_port}"
        self.otlp_http_metrics_url = f"{self.otlp_http_url}/v1/metrics"
        self.otlp_grpc_endpoint = f"127.0.0.1:{self.grpc_port}"
        self.remote_write_url = f"{self.api_url}/api/v1/write"
        self.extra_args = list(extra_args)
        self.http = requests.Session()

    def start(self, timeout: float = 30.0) -> "Sonde":
        argv = [
            self.binary,
            self.command,
            "--data-dir", str(self.data_dir),
            "--api-addr", f"127.0.0.1:{self.api_port}",
            "--otlp-grpc-addr", self.otlp_grpc_endpoint,
            "--otlp-http-addr", f"127.0.0.1:{self.http_port}",
            "--log-level", "info",
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SONDE_")}
        env["NO_COLOR"] = "1"
        self._spawn(argv, self.tmp / "sonde.log", env=env)
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(
                    f"sonde exited with code {self.proc.returncode} before it was ready:\n"
                    f"{' '.join(argv)}\n{self.log_text()}"
                )
            try:
                r = self.http.get(f"{self.api_url}/ready", timeout=1)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sonde was not ready within {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def restart(self, crash: bool = False, timeout: float = 30.0) -> "Sonde":
        """Stops the server (SIGKILL when `crash`, else SIGTERM, which must
        exit 0) and starts it again on the same ports and data directory."""
        if crash:
            self.kill9()
        else:
            code = self.stop()
            assert code == 0, f"sonde did not shut down cleanly on SIGTERM (exit code {code}):\n{self.log_text()}"
        with open(self.log_path, "ab") as log:
            log.write(b"\n=== restart" + (b" after kill -9" if crash else b"") + b" ===\n")
        return self.start(timeout)

    # -- OTLP traces and logs ---------------------------------------------

    @property
    def traces_url(self) -> str:
        return f"{self.otlp_http_url}/v1/traces"

    @property
    def logs_url(self) -> str:
        return f"{self.otlp_http_url}/v1/logs"

    def get(self, path: str, params=None, **kw) -> requests.Response:
        """A raw GET on the API port."""
        return self.http.get(f"{self.api_url}{path}", params=params, timeout=30, **kw)

    # -- the Prometheus HTTP API ------------------------------------------

    def api(self, path: str, params=None, method: str = "GET") -> dict:
        """Calls an API endpoint; returns `data` of a successful answer."""
        return api_call(self.http, self.api_url, path, params, method)

    def query(self, expr: str, time: float | None = None) -> dict:
        """An instant query; returns `data` ({resultType, result})."""
        params = {"query": expr}
        if time is not None:
            params["time"] = format_time(time)
        return self.api("/api/v1/query", params)

    def vector(self, expr: str, time: float | None = None) -> dict[frozenset, float]:
        """An instant query that must give a vector: {label set: value}."""
        return vector_of(self.query(expr, time), expr)

    def value(self, expr: str, time: float | None = None, **labels: str) -> float:
        """The value of the one series that `expr` gives (or `labels` select)."""
        vec = self.vector(expr, time)
        return one_value(vec, expr, labels)

    def matrix(self, expr: str, time: float | None = None) -> dict[frozenset, list[tuple[int, float]]]:
        """An instant query that must give a matrix: {label set: [(t ms, v)]}."""
        return matrix_of(self.query(expr, time), expr)

    def flush(self) -> None:
        r = self.http.post(f"{self.api_url}/api/v1/admin/flush", timeout=30)
        assert r.status_code in (200, 204), f"flush: {r.status_code} {r.text}"


def format_time(t: float) -> str:
    return f"{t:.3f}"


def api_call(session, base: str, path: str, params=None, method: str = "GET") -> dict:
    url = f"{base}{path}"
    if method == "GET":
        r = session.get(url, params=params, timeout=30)
    else:
        r = session.post(url, data=params, timeout=30)
    try:
        body = r.json()
    except ValueError:
        raise QueryError(f"{method} {r.url} -> {r.status_code}, not JSON: {r.text[:2000]!r}")
    if r.status_code != 200 or body.get("status") != "success":
        raise QueryError(f"{method} {r.url} (params {params}) -> {r.status_code}: {body}")
    return body["data"]


def parse_value(s: str) -> float:
    return float(s)  # handles "NaN", "+Inf", "-Inf"


def vector_of(data: dict, expr: str = "") -> dict[frozenset, float]:
    if data["resultType"] != "vector":
        raise QueryError(f"{expr!r}: expected a vector, got {data['resultType']}: {data}")
    out = {}
    for item in data["result"]:
        key = frozenset(item["metric"].items())
        if key in out:
            raise QueryError(f"{expr!r}: label set {dict(key)} appears twice: {data}")
        out[key] = parse_value(item["value"][1])
    return out


def matrix_of(data: dict, expr: str = "") -> dict[frozenset, list[tuple[int, float]]]:
    if data["resultType"] != "matrix":
        raise QueryError(f"{expr!r}: expected a matrix, got {data['resultType']}: {data}")
    out = {}
    for item in data["result"]:
        key = frozenset(item["metric"].items())
        if key in out:
            raise QueryError(f"{expr!r}: label set {dict(key)} appears twice: {data}")
        out[key] = [(round(float(t) * 1000), parse_value(v)) for t, v in item["values"]]
    return out


def one_value(vec: dict[frozenset, float], expr: str, labels: dict) -> float:
    matches = [(k, v) for k, v in vec.items() if all((n, val) in k for n, val in labels.items())]
    if len(matches) != 1:
        raise QueryError(
            f"{expr!r}: expected one series matching {labels}, got {len(matches)}: "
            f"{[(dict(k), v) for k, v in vec.items()]}"
        )
    return matches[0][1]


def close(a: float, b: float, rel: float = 1e-9, abs_tol: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


class Prometheus(LoggedProcess):
    """A real Prometheus on a free loopback port with its own storage."""

    name = "prometheus"

    def __init__(self, config_yaml: str, binary: str | None = None, flags: Iterable[str] = ()) -> None:
        super().__init__()
        self.binary = binary or os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.flags = list(flags)
        self.tmp = Path(tempfile.mkdtemp(prefix="sonde-test-prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.tmp / "prometheus.yml"
        self.config_path.write_text(config_yaml)
        self.http = requests.Session()

    def start(self, timeout: float = 60.0) -> "Prometheus":
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
            *self.flags,
        ]
        self._spawn(argv, self.tmp / "prometheus.log")
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(
                    f"prometheus exited with code {self.proc.returncode} before it was ready:\n{self.log_text()}"
                )
            try:
                if self.http.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus was not ready within {timeout}s:\n{self.log_text()}")
            time.sleep(0.1)

    def api(self, path: str, params=None, method: str = "GET") -> dict:
        return api_call(self.http, self.url, path, params, method)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ScrapeTarget:
    """A Prometheus scrape target on a free loopback port: each GET of
    /metrics serves what `render` returns then (text exposition format)."""

    def __init__(self, render: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- OTLP traces and logs, built by hand ----------------------------------
#
# Protobuf messages from `opentelemetry-proto`; `otlp_json` turns one into the
# OTLP/JSON mapping (hex ids, integer enums), which differs from protobuf's
# own JSON mapping (base64 bytes, enum names).

TRUNCATION_MARKER = "…[truncated]"


def any_value(v):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValueList

    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(v)))
    raise TypeError(f"no OTLP value for {v!r}")


def key_values(attrs: dict | None) -> list:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=any_value(v)) for k, v in (attrs or {}).items()]


def _id(v) -> bytes:
    return bytes.fromhex(v) if isinstance(v, str) else bytes(v)


def otlp_span(trace_id, span_id, name: str, start_ns: int, end_ns: int, parent="", kind: int = 1,
              status: int = 0, status_message: str = "", attrs: dict | None = None,
              events: list | None = None, links: list | None = None, flags: int = 0):
    """A span; ids as hex or bytes; `events` as (time_ns, name, attrs),
    `links` as (trace_id, span_id, attrs); kind and status as OTLP numbers."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    return Span(
        trace_id=_id(trace_id),
        span_id=_id(span_id),
        parent_span_id=_id(parent),
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        attributes=key_values(attrs),
        status=Status(code=status, message=status_message),
        events=[Span.Event(time_unix_nano=t, name=n, attributes=key_values(a)) for t, n, a in events or []],
        links=[Span.Link(trace_id=_id(t), span_id=_id(s), attributes=key_values(a)) for t, s, a in links or []],
        flags=flags,
    )


def _resource(service: str | None, host: str | None, extra: dict | None):
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    attrs = {}
    if service is not None:
        attrs["service.name"] = service
    if host is not None:
        attrs["host.name"] = host
    attrs.update(extra or {})
    return Resource(attributes=key_values(attrs))


def traces_request(*groups):
    """An ExportTraceServiceRequest from `resource_spans(...)` groups."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest(resource_spans=list(groups))


def resource_spans(service: str | None, spans: list, host: str | None = None, resource: dict | None = None,
                   scope: tuple[str, str] = ("sonde.tests", "1.0.0")):
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    return ResourceSpans(
        resource=_resource(service, host, resource),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope[0], version=scope[1]), spans=spans)],
    )


def otlp_log(time_ns: int, body, severity: int = 9, severity_text: str = "", attrs: dict | None = None,
             trace_id="", span_id="", observed_ns: int = 0, flags: int = 0):
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    return LogRecord(
        time_unix_nano=time_ns,
        observed_time_unix_nano=observed_ns,
        severity_number=severity,
        severity_text=severity_text,
        body=any_value(body),
        attributes=key_values(attrs),
        trace_id=_id(trace_id),
        span_id=_id(span_id),
        flags=flags,
    )


def logs_request(*groups):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    return ExportLogsServiceRequest(resource_logs=list(groups))


def resource_logs(service: str | None, logs: list, host: str | None = None, resource: dict | None = None,
                  scope: tuple[str, str] = ("sonde.tests", "1.0.0")):
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs

    return ResourceLogs(
        resource=_resource(service, host, resource),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name=scope[0], version=scope[1]), log_records=logs)],
    )


_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def otlp_json(msg) -> dict:
    """The OTLP/JSON form of a protobuf message: ids as hex, enums as numbers."""
    import base64

    from google.protobuf import json_format

    def fix(node):
        if isinstance(node, dict):
            return {
                k: (base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    return fix(json_format.MessageToDict(msg, use_integers_for_enums=True))


def otlp_proto_from_json(doc: dict, cls):
    """Parses OTLP/JSON (hex ids) into the protobuf message `cls`. Keys this
    version of the protobuf classes does not know (e.g. `eventName`) are
    dropped."""
    import base64

    from google.protobuf import json_format

    def fix(node):
        if isinstance(node, dict):
            return {
                k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS and isinstance(v, str) else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    return json_format.ParseDict(fix(doc), cls(), ignore_unknown_fields=True)


def post_otlp(url: str, body, content_type: str | None = None, gzipped: bool = False,
              headers: dict | None = None) -> requests.Response:
    """POSTs an OTLP/HTTP request: a protobuf message, a dict (sent as JSON)
    or raw bytes (with `content_type`)."""
    import gzip
    import json

    if isinstance(body, dict):
        data = json.dumps(body).encode()
        content_type = content_type or "application/json"
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
        content_type = content_type or "application/x-protobuf"
    else:
        data = body.SerializeToString()
        content_type = content_type or "application/x-protobuf"
    h = {"Content-Type": content_type, **(headers or {})}
    if gzipped:
        data = gzip.compress(data)
        h["Content-Encoding"] = "gzip"
    return requests.post(url, data=data, headers=h, timeout=30)


def otlp_ok(r: requests.Response, what: str = "export") -> None:
    """Asserts a fully successful OTLP/HTTP export (200, nothing rejected)."""
    assert r.status_code == 200, f"{what}: {r.status_code} {r.content[:2000]!r}"
    if r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        assert not body.get("partialSuccess"), f"{what}: {body}"
    else:
        assert r.content == b"", f"{what}: unexpected partial success {r.content!r}"


GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GRPC_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def grpc_export(endpoint: str, method: str, msg_or_bytes) -> bytes:
    """One unary OTLP/gRPC call with the real grpcio client; the raw answer."""
    import grpc

    payload = msg_or_bytes if isinstance(msg_or_bytes, bytes) else msg_or_bytes.SerializeToString()
    with grpc.insecure_channel(endpoint) as ch:
        export = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        return export(payload, timeout=10)


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


# -- Server-Sent Events ----------------------------------------------------


class SseStream:
    """A live `text/event-stream` response read from a plain socket, so a
    test can wait for events with a deadline and close the stream at once.
    Handles chunked and close-delimited bodies."""

    def __init__(self, base_url: str, path_and_query: str, timeout: float = 10.0) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(base_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        req = (
            f"GET {path_and_query} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        )
        self.sock.sendall(req.encode())
        self._raw = b""
        self._body = b""
        self._ended = False
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline):
                raise AssertionError(f"no response headers from {path_and_query}: {self._raw!r}")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.pending: list[tuple[str, str]] = []

    def _recv(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self._ended:
            return False
        self.sock.settimeout(min(left, 0.2))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            self._ended = True
            return False
        if not data:
            self._ended = True
            return False
        self._raw += data
        return True

    def _decode(self) -> None:
        if not self.chunked:
            self._body += self._raw
            self._raw = b""
            return
        while True:
            i = self._raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self._raw[:i].split(b";")[0], 16)
            if size == 0:
                self._ended = True
                self._raw = b""
                return
            if len(self._raw) < i + 2 + size + 2:
                return
            self._body += self._raw[i + 2 : i + 2 + size]
            self._raw = self._raw[i + 2 + size + 2 :]

    def _parse(self) -> None:
        text = self._body.replace(b"\r\n", b"\n")
        while b"\n\n" in text:
            block, text = text.split(b"\n\n", 1)
            event, data = "message", []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
            if data or event != "message":
                self.pending.append((event, "\n".join(data)))
        self._body = text

    def next_event(self, timeout: float) -> tuple[str, str] | None:
        """The next (event, data), or None when none comes within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self._decode()
            self._parse()
            if self.pending:
                return self.pending.pop(0)
            if not self._recv(deadline):
                return None

    def events_during(self, seconds: float) -> list[tuple[str, str]]:
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ev = self.next_event(left)
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> "SseStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
