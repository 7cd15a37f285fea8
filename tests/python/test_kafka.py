"""Kafka ingest through a real Kafka-compatible broker (tansu), with
confluent-kafka (librdkafka 2.16, not our code) as the producer: the
OpenTelemetry Collector's otlp_proto and otlp_json encodings, remote
write, line protocol and JSON; headers as attributes; at-least-once across
kill -9; a malformed message in the middle of a partition; a broker
restart; two Sonde nodes sharing a topic in one consumer group."""

from __future__ import annotations

import json
import re
import time

import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from brokers import Tansu, distinct_values, otlp_gauge, wait_count, wait_value
from harness import Sonde, logs_request, otlp_log, otlp_span, resource_logs, resource_spans, traces_request
from test_remote_write import write_request

import confluent_kafka  # noqa: F401  (the producer; a missing package fails)

TOPICS = ["otlp_metrics:otlp_proto:metrics", "otlp_spans:otlp_proto:traces",
          "otlp_logs:otlp_proto:logs", "metrics_json:otlp_json:metrics", "prom:remote_write",
          "influx:influx", "devices:json"]


@pytest.fixture
def broker():
    b = Tansu().start()
    for spec in TOPICS:
        b.create_topic(spec.split(":")[0], partitions=2)
    yield b
    b.cleanup()


def start_sonde(broker: Tansu, *extra: str, group: str = "sonde") -> Sonde:
    s = Sonde(["--kafka-brokers", broker.bootstrap, "--kafka-group-id", group,
               "--kafka-topics", ",".join(TOPICS), *extra])
    return s.start()


def produce(broker: Tansu, topic: str, payloads: list[bytes], headers: dict | None = None,
            key: bytes | None = None) -> None:
    p = broker.producer()
    for body in payloads:
        p.produce(topic, body, key=key, headers=list((headers or {}).items()))
    assert p.flush(20) == 0, "the producer could not deliver"


def kafka_count(s: Sonde, outcome: str) -> float:
    total = 0.0
    for line in s.get("/metrics").text.splitlines():
        if line.startswith("sonde_broker_messages_total{") and 'transport="kafka"' in line \
                and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_collector_encodings_and_headers(broker):
    s = start_sonde(broker)
    try:
        produce(broker, "otlp_metrics", [otlp_gauge("kafka.proto.gauge", 7.25, service="billing")],
                headers={"tenant": "acme"})
        req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(otlp_gauge("kafka.json.gauge", 8.5))
        produce(broker, "metrics_json", [MessageToJson(req).encode()])
        vec = wait_value(s, "kafka_proto_gauge", 7.25)
        (lbls,) = [dict(k) for k in vec]
        assert lbls["job"] == "billing"
        # Headers become resource attributes: target_info carries them.
        assert s.value('target_info{job="billing"}') == 1
        assert dict(next(iter(s.vector('target_info{job="billing"}'))))["tenant"] == "acme"
        wait_value(s, "kafka_json_gauge", 8.5)

        now = time.time_ns()
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        spans = traces_request(resource_spans("kafka-svc", [
            otlp_span(trace_id, "b7ad6b7169203331", "GET /cart", now - 5_000_000, now)]))
        logs = logs_request(resource_logs("kafka-svc", [otlp_log(now, "paid", trace_id=trace_id)]))
        produce(broker, "otlp_spans", [spans.SerializeToString()], headers={"tenant": "acme"})
        produce(broker, "otlp_logs", [logs.SerializeToString()])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = s.get(f"/api/v1/traces/{trace_id}")
            if r.status_code == 200 and r.json()["data"].get("logs"):
                break
            time.sleep(0.1)
        data = r.json()["data"]
        assert [sp["name"] for sp in data["spans"]] == ["GET /cart"]
        assert data["spans"][0]["resource"]["tenant"] == "acme", data["spans"][0]
        assert [l["body"] for l in data["logs"]] == ["paid"]
    finally:
        s.cleanup()


def test_remote_write_line_protocol_and_json(broker):
    s = start_sonde(broker)
    try:
        now_ms = int(time.time() * 1000)
        produce(broker, "prom", [write_request([({"__name__": "rw_metric", "env": "prod"}, [(now_ms, 42.0)])])])
        produce(broker, "influx", [f"disk,host=h1 used=0.5 {time.time_ns()}".encode()])
        produce(broker, "devices", [json.dumps({"voltage": 229.5, "phase": "L1"}).encode()],
                key=b"meter-9")
        assert wait_value(s, 'rw_metric{env="prod"}', 42.0)
        assert wait_value(s, 'disk_used{host="h1"}', 0.5)
        assert wait_value(s, 'voltage{phase="L1"}', 229.5)
    finally:
        s.cleanup()


def test_a_device_message_without_a_time_takes_the_messages_own_on_every_delivery(broker):
    """No timestamp in the payload: the sample gets the Kafka message's
    timestamp, not the time Sonde reads it, so a re-delivery (here: the
    same message sent again) lands on the same point and is stored once."""
    s = start_sonde(broker)
    try:
        stamp_ms = int(time.time() * 1000) - 120_000
        p = broker.producer()
        for _ in range(2):
            p.produce("devices", json.dumps({"pressure_bar": 3.5}).encode(), timestamp=stamp_ms)
        assert p.flush(20) == 0
        deadline = time.monotonic() + 30
        points = []
        while time.monotonic() < deadline and not points:
            series = s.matrix("pressure_bar[10m]", time.time())
            points = [pt for pts in series.values() for pt in pts]
            time.sleep(0.2)
        time.sleep(2)  # the second delivery, had it made a second point
        series = s.matrix("pressure_bar[10m]", time.time())
        points = [pt for pts in series.values() for pt in pts]
        assert points == [(stamp_ms, 3.5)], points
    finally:
        s.cleanup()


def test_malformed_message_mid_partition_is_dead_lettered(broker):
    broker.create_topic("sonde-dlq", partitions=1)
    s = start_sonde(broker, "--kafka-dead-letter-topic", "sonde-dlq")
    try:
        base = time.time_ns() - 60_000_000_000
        p = broker.producer()
        # One partition, in order: good, bad, good.
        p.produce("otlp_metrics", otlp_gauge("dlq.seq", 1, t_ns=base), partition=0)
        p.produce("otlp_metrics", b"\x0a\xff\xff garbage", partition=0)
        p.produce("otlp_metrics", otlp_gauge("dlq.seq", 2, t_ns=base + 1_000_000), partition=0)
        assert p.flush(20) == 0
        assert wait_count(s, "dlq_seq", 2, 20) == 2
        assert kafka_count(s, "malformed") == 1
        assert kafka_count(s, "dead_lettered") == 1
        assert re.search(r"malformed.*partition=0.*offset=1|partition=0.*offset=1.*malformed", s.log_text()), \
            s.log_text()
        (dead,) = broker.consume("sonde-dlq", 1)
        assert dead.value() == b"\x0a\xff\xff garbage"
        h = {k: v.decode() for k, v in dead.headers()}
        assert h["sonde.source.topic"] == "otlp_metrics"
        assert (h["sonde.source.partition"], h["sonde.source.offset"]) == ("0", "1")
        assert "protobuf" in h["sonde.error"]
    finally:
        s.cleanup()


def produce_sequence(broker: Tansu, values: range, base_ns: int) -> None:
    p = broker.producer()
    for i in values:
        p.produce("otlp_metrics", otlp_gauge("kseq", i, t_ns=base_ns + i * 1_000_000), key=str(i).encode())
        p.poll(0)
    assert p.flush(30) == 0


def test_kill9_mid_stream_loses_nothing_and_commits_offsets(broker):
    s = start_sonde(broker)
    try:
        base = time.time_ns() - 300_000_000_000
        produce_sequence(broker, range(0, 2000), base)
        # Kill while the consumer is working through the backlog.
        deadline = time.monotonic() + 20
        while len(distinct_values(s, "kseq")) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        s.kill9()
        produce_sequence(broker, range(2000, 3000), base)
        s.start()
        assert wait_count(s, "kseq", 3000, 60) == 3000, s.log_text()
        # Re-delivered messages did not double anything: one sample each.
        (series,) = s.api("/api/v1/query", {"query": "kseq[1h]"})["result"]
        assert len(series["values"]) == 3000
        deadline = time.monotonic() + 10
        committed = []
        while time.monotonic() < deadline:
            committed = broker.committed("sonde", "otlp_metrics", partitions=2)
            if sum(max(c, 0) for c in committed) == 3000:
                break
            time.sleep(0.5)
        assert sum(max(c, 0) for c in committed) == 3000, committed
    finally:
        s.cleanup()


def test_broker_restart_mid_stream(broker):
    s = start_sonde(broker)
    try:
        base = time.time_ns() - 300_000_000_000
        produce_sequence(broker, range(0, 100), base)
        assert wait_count(s, "kseq", 100, 20) == 100
        # The broker goes away mid-stream and comes back with its log.
        produce_sequence(broker, range(100, 150), base)
        broker.stop()
        time.sleep(2)
        broker.start()
        produce_sequence(broker, range(150, 200), base)
        assert wait_count(s, "kseq", 200, 60) == 200, s.log_text()
    finally:
        s.cleanup()


def test_two_nodes_share_partitions_and_take_over(broker):
    # Dynamic membership: tansu 0.6 never expires a static member that
    # stopped (its coordinator skips the session check for requests with a
    # group.instance.id), so a's partitions would never move to b.
    a = start_sonde(broker, "--kafka-instance-id", "none", group="shared")
    b = start_sonde(broker, "--kafka-instance-id", "none", group="shared")
    try:
        base = time.time_ns() - 300_000_000_000
        # Let the group settle with both members before producing.
        time.sleep(8)
        produce_sequence(broker, range(0, 400), base)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            na, nb = len(distinct_values(a, "kseq")), len(distinct_values(b, "kseq"))
            if na + nb >= 400:
                break
            time.sleep(0.2)
        assert na + nb == 400, (na, nb)
        assert na > 0 and nb > 0, f"one node got every partition: {na}, {nb}"
        # Node a leaves; b takes its partitions over from the committed offsets.
        assert a.stop() == 0
        produce_sequence(broker, range(400, 800), base)
        assert wait_count(b, "kseq", nb + 400, 60) == nb + 400, b.log_text()
    finally:
        a.cleanup()
        b.cleanup()
