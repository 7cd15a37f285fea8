#!/usr/bin/env python3
"""Kafka and MQTT ingest benchmarks (issue 5), against real brokers.

Kafka (tansu, in-memory): a backlog of OTLP protobuf batches is produced
before Sonde starts, so Sonde alone sets the pace; the figure is data
points stored per CPU-second of the Sonde process (user + system, from
/proc). Then produce-to-queryable latency: one message every 20 ms, each a
new value of one gauge, and a poller that records when each value is
first returned by /api/v1/query.

MQTT (Mosquitto): N JSON messages published with `mosquitto_pub -l` at QoS
0 and 1; the rate at which Sonde stores them is compared with the rate at
which `mosquitto_sub` (a subscriber that does nothing with them) receives
the same stream through the same broker. Then publish-to-queryable latency
as for Kafka.

Run from the repository with the test venv (scripts/test makes it):
    ~/.cache/sonde-test/venv/bin/python crates/bench/scripts/broker-ingest.py \
        --sonde ~/.cache/sonde-target/release/sonde
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "python"))

from brokers import Mosquitto, Tansu, otlp_gauge  # noqa: E402
from harness import Sonde  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def broker_messages(s: Sonde, transport: str) -> float:
    total = 0.0
    for line in s.get("/metrics").text.splitlines():
        if line.startswith("sonde_broker_messages_total{") and f'transport="{transport}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def otlp_batch(points: int, series: int, t_ns: int, seq: int) -> bytes:
    """One OTLP metrics request: `points` gauge points over `series` series."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    per_series = max(1, points // series)
    metrics = []
    for m in range(series):
        dps = [NumberDataPoint(as_double=float(seq * per_series + i), time_unix_nano=t_ns + i * 1_000_000,
                               attributes=[KeyValue(key="shard", value=AnyValue(string_value=str(m % 10)))])
               for i in range(per_series)]
        metrics.append(Metric(name=f"bench_kafka_{m // 10}", gauge=Gauge(data_points=dps)))
    rm = ResourceMetrics(resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))]),
                         scope_metrics=[ScopeMetrics(metrics=metrics)])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def latency_probe(s: Sonde, send, count: int, interval: float, metric: str) -> list[float]:
    """Sends `count` values via `send(value)`; returns send-to-queryable
    seconds for each, seen by polling the newest value."""
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll():
        import requests
        http = requests.Session()
        while not done.is_set():
            r = http.get(f"{s.api_url}/api/v1/query", params={"query": metric}, timeout=5).json()
            now = time.monotonic()
            for series in r["data"]["result"]:
                v = int(float(series["value"][1]))
                for k in range(v, -1, -1):
                    if k in seen:
                        break
                    if k in sent:
                        seen[k] = now
            time.sleep(0.002)

    t = threading.Thread(target=poll)
    t.start()
    for i in range(1, count + 1):
        sent[i] = time.monotonic()
        send(i)
        time.sleep(interval)
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    t.join()
    return sorted(seen[k] - sent[k] for k in seen)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def bench_kafka(binary: str, messages: int, points: int) -> dict:
    broker = Tansu().start()
    broker.create_topic("otlp_metrics", partitions=2)
    broker.create_topic("latency", partitions=1)
    try:
        payloads = [otlp_batch(points, 100, time.time_ns() - 3_600_000_000_000 + i * points * 1_000_000, i)
                    for i in range(messages)]
        p = broker.producer(**{"linger.ms": 20, "batch.num.messages": 1000})
        for body in payloads:
            p.produce("otlp_metrics", body)
            p.poll(0)
        assert p.flush(120) == 0
        os.environ["SONDE_BIN"] = binary
        s = Sonde(["--kafka-brokers", broker.bootstrap, "--kafka-topics",
                   "otlp_metrics:otlp_proto:metrics,latency:otlp_proto:metrics"])
        s.start()
        cpu0, t0 = cpu_seconds(s.proc.pid), time.monotonic()
        while broker_messages(s, "kafka") < messages:
            time.sleep(0.05)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("Kafka backlog not consumed in 10 minutes")
        cpu, wall = cpu_seconds(s.proc.pid) - cpu0, time.monotonic() - t0
        total = messages * points

        quick = broker.producer(**{"linger.ms": 0})

        def send(v: int):
            quick.produce("latency", otlp_gauge("bench.latency", v))
            quick.flush(5)

        lat = latency_probe(s, send, 300, 0.02, "bench_latency")
        s.cleanup()
        return {"points": total, "cpu_s": cpu, "wall_s": wall, "points_per_cpu_s": total / cpu,
                "points_per_s": total / wall, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
                "latency_samples": len(lat)}
    finally:
        broker.cleanup()


def bench_mqtt(binary: str, messages: int) -> dict:
    broker = Mosquitto().start()
    out = {}
    try:
        os.environ["SONDE_BIN"] = binary
        s = Sonde(["--mqtt-url", broker.url, "--mqtt-subscriptions",
                   "bench/{device}/telemetry:json,latency/{device}:json"])
        s.start()
        time.sleep(1.5)
        base = int(time.time() * 1000) - 3_600_000
        lines = "\n".join(json.dumps({"temp": i % 100, "rpm": i, "timestamp": base + i // 10})
                          for i in range(messages)) + "\n"
        for qos in (0, 1):
            # A subscriber that does nothing: the broker's own pace.
            sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
                                    "-t", "bench/+/telemetry", "-C", str(messages)], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            stored0 = broker_messages(s, "mqtt")
            cpu0, t0 = cpu_seconds(s.proc.pid), time.monotonic()
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
                            "-t", f"bench/dev{qos}/telemetry", "-l"], input=lines.encode(), check=True)
            publish_s = time.monotonic() - t0
            sub.wait(timeout=300)
            sub_s = time.monotonic() - t0
            while broker_messages(s, "mqtt") - stored0 < messages * (0.999 if qos == 0 else 1):
                time.sleep(0.02)
                if time.monotonic() - t0 > 300:
                    break
            sonde_s = time.monotonic() - t0
            stored = broker_messages(s, "mqtt") - stored0
            out[f"qos{qos}"] = {"messages": messages, "stored": stored, "publish_s": publish_s,
                                "null_subscriber_msgs_per_s": messages / sub_s,
                                "sonde_msgs_per_s": stored / sonde_s,
                                "sonde_cpu_s": cpu_seconds(s.proc.pid) - cpu0}

        def send(v: int):
            broker.publish("latency/probe", json.dumps({"probe": v}), qos=1)

        lat = latency_probe(s, send, 200, 0.02, "probe")
        out["latency"] = {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3, "samples": len(lat)}
        s.cleanup()
        return out
    finally:
        broker.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sonde", default=str(Path.home() / ".cache/sonde-target/release/sonde"))
    ap.add_argument("--kafka-messages", type=int, default=2000)
    ap.add_argument("--points-per-message", type=int, default=1000)
    ap.add_argument("--mqtt-messages", type=int, default=50000)
    a = ap.parse_args()
    result = {"kafka": bench_kafka(a.sonde, a.kafka_messages, a.points_per_message),
              "mqtt": bench_mqtt(a.sonde, a.mqtt_messages)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
