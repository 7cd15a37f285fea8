"""Real message brokers for the tests: Mosquitto (Debian's package) and
tansu, a Kafka-compatible broker (built by scripts/test into a cache).

Each runs on free loopback ports with its log attached to failing tests,
like Sonde itself (harness.LoggedProcess). A missing broker fails the test
(scripts/test installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness import LoggedProcess, Sonde, free_port, otlp_proto_from_json

TANSU = os.environ.get("SONDE_TANSU") or str(Path.home() / ".cache/sonde-tools/tansu-0.6.0-libsql/bin/tansu")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def require(binary: str, what: str) -> None:
    if Path(binary).is_file():
        return
    pytest.fail(f"{what} not found at {binary}; scripts/test installs it", pytrace=False)


def wait_port(port: int, proc: LoggedProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port}:\n{proc.log_text()}")


class Mosquitto(LoggedProcess):
    """A Mosquitto broker on a free loopback port, anonymous access."""

    name = "mosquitto"

    def __init__(self) -> None:
        super().__init__()
        require(MOSQUITTO, "mosquitto")
        self.tmp = Path(tempfile.mkdtemp(prefix="sonde-mosquitto-"))
        # Mosquitto started as root drops to its own user, which must be
        # able to write its persistence file here.
        self.tmp.chmod(0o777)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        (self.tmp / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Keep sessions and retained messages across a broker restart.
            "persistence true\n"
            f"persistence_location {self.tmp}/\n"
            "max_queued_messages 100000\n"
        )

    def start(self) -> "Mosquitto":
        self._spawn([MOSQUITTO, "-c", str(self.tmp / "mosquitto.conf")], self.tmp / "mosquitto.log")
        wait_port(self.port, self)
        return self

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                protocol: str = "mqttv5", properties: dict | None = None) -> None:
        """Publishes with `mosquitto_pub`, a producer that is not our code."""
        argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
                "-q", str(qos), "-V", protocol, "-s"]
        if retain:
            argv.append("-r")
        for k, v in (properties or {}).items():
            argv += ["-D", "publish", "user-property", k, v]
        data = payload.encode() if isinstance(payload, str) else payload
        subprocess.run(argv, input=data, check=True, timeout=20)

    def retained(self, topic: str, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """The retained messages under `topic` (a filter), via mosquitto_sub."""
        out = subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
             "--retained-only", "-v", "-W", str(int(timeout))],
            capture_output=True, timeout=timeout + 10,
        ).stdout
        msgs = []
        for line in out.decode().splitlines():
            t, _, body = line.partition(" ")
            msgs.append((t, body.encode()))
        return msgs

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Tansu(LoggedProcess):
    """A tansu Kafka-compatible broker, its log in SQLite (so it survives
    a restart of the broker, as a Kafka log does)."""

    name = "tansu"

    def __init__(self) -> None:
        super().__init__()
        require(TANSU, "tansu")
        self.tmp = Path(tempfile.mkdtemp(prefix="sonde-tansu-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self) -> "Tansu":
        url = f"tcp://127.0.0.1:{self.port}"
        # tansu resolves the SQLite path against its working directory.
        self._spawn([TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", "sqlite://tansu.db"], self.tmp / "tansu.log", cwd=self.tmp)
        wait_port(self.port, self)
        return self

    def create_topic(self, name: str, partitions: int = 1) -> None:
        subprocess.run([TANSU, "topic", "create", "--broker", f"tcp://127.0.0.1:{self.port}",
                        "--partitions", str(partitions), name], check=True, timeout=30,
                       capture_output=True)

    def producer(self, **conf):
        """A confluent-kafka (librdkafka 2.16) producer: not our code."""
        from confluent_kafka import Producer
        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, **conf})

    def consume(self, topic: str, count: int, timeout: float = 20.0) -> list:
        """Reads `count` messages of `topic` from the start, in a fresh group."""
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{time.time_ns()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < count and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m)
        finally:
            c.close()
        return got

    def committed(self, group: str, topic: str, partitions: int = 1) -> list[int]:
        """The group's committed offsets of each partition (-1001: none)."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        try:
            parts = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            return [p.offset for p in parts]
        finally:
            c.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def otlp_gauge(name: str, value: float, service: str = "mqtt-device", t_ns: int | None = None) -> bytes:
    """An OTLP metrics export request with one gauge point, as protobuf."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    doc = {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeMetrics": [{"metrics": [{"name": name, "gauge": {"dataPoints": [
            {"asDouble": value, "timeUnixNano": str(t_ns or time.time_ns())}]}}]}],
    }]}
    return otlp_proto_from_json(doc, metrics_service_pb2.ExportMetricsServiceRequest).SerializeToString()


def wait_value(s: Sonde, expr: str, want: float | None = None, timeout: float = 15.0) -> dict:
    """Polls an instant query until it gives a series (with value `want`)."""
    deadline = time.monotonic() + timeout
    vec = {}
    while time.monotonic() < deadline:
        vec = s.vector(expr)
        if vec and (want is None or any(abs(v - want) < 1e-9 for v in vec.values())):
            return vec
        time.sleep(0.1)
    raise AssertionError(f"{expr} gave {vec}, wanted {want}\n{s.log_text()}")


def distinct_values(s: Sonde, selector: str, window: str = "1h") -> set[float]:
    """The distinct values of the one series `selector` picks, over `window`."""
    data = s.api("/api/v1/query", {"query": f"{selector}[{window}]"})["result"]
    return {float(v) for series in data for _, v in series["values"]}


def wait_count(s: Sonde, selector: str, n: int, timeout: float = 30.0) -> int:
    """Polls until `selector` has `n` distinct values; returns how many it has."""
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = len(distinct_values(s, selector))
        if got >= n:
            break
        time.sleep(0.2)
    return got
