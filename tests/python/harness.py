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
import time
from pathlib import Path
from typing import Iterable

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

    def _spawn(self, argv: list[str], log_path: Path, env: dict | None = None) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
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


class QueryError(AssertionError):
    pass


class Sonde(LoggedProcess):
    """A running `sonde serve` and the URLs of its three listeners."""

    name = "sonde"

    def __init__(self, extra_args: Iterable[str] = ()) -> None:
        super().__init__()
        self.binary = os.environ.get("SONDE_BIN") or str(DEFAULT_BIN)
        if not Path(self.binary).is_file():
            raise FileNotFoundError(
                f"sonde binary not found at {self.binary}; build it with "
                "`cargo build -p sonde-server` or set SONDE_BIN"
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
            "serve",
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

    def __init__(self, config_yaml: str, binary: str | None = None) -> None:
        super().__init__()
        self.binary = binary or os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
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
