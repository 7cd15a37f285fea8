"""MQTT ingest through a real Mosquitto broker, with `mosquitto_pub` (not
our code) as the producer: topic templates, JSON, line protocol, OTLP and
Sparkplug B payloads, QoS 1 with a persistent session across Sonde's
restart and crash, a broker restart, malformed messages, and collection
policies published as retained messages."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from brokers import Mosquitto, otlp_gauge, wait_count, wait_value
from harness import Sonde, otlp_span, resource_spans, traces_request


@pytest.fixture
def broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


SUBSCRIPTIONS = ",".join([
    "plant/{site}/{line}/{device}/telemetry:json",
    "influx/{site}/#:influx",
    "otlp/metrics:otlp_proto:metrics",
    "otlp/traces:otlp_proto:traces",
    "spBv1.0/#:sparkplug",
])


def start_sonde(broker: Mosquitto, *extra: str, client_id: str = "sonde-test") -> Sonde:
    s = Sonde(["--mqtt-url", broker.url, "--mqtt-client-id", client_id,
               "--mqtt-subscriptions", SUBSCRIPTIONS, *extra])
    s.start()
    wait_subscribed(s)
    return s


def wait_subscribed(s: Sonde, timeout: float = 15.0) -> None:
    """The subscription is in place once the connection is up and a moment
    has passed for the SUBACK."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if 'sonde_broker_connected{transport="mqtt"} 1' in s.get("/metrics").text:
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise AssertionError(f"Sonde did not connect to MQTT:\n{s.log_text()}")


def broker_count(s: Sonde, outcome: str) -> float:
    total = 0.0
    for line in s.get("/metrics").text.splitlines():
        if line.startswith("sonde_broker_messages_total{") and f'outcome="{outcome}"' in line \
                and 'transport="mqtt"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def labels(vec: dict) -> dict:
    (key,) = vec.keys()
    return dict(key)


def test_json_topic_levels_become_labels(broker):
    s = start_sonde(broker)
    try:
        now_ms = int(time.time() * 1000)
        broker.publish("plant/berlin/l1/press-7/telemetry", json.dumps({
            "temp": 21.5, "motor": {"rpm": 1200, "on": True}, "status": "ok", "timestamp": now_ms,
        }))
        vec = wait_value(s, "temp", 21.5)
        assert labels(vec) == {"__name__": "temp", "site": "berlin", "line": "l1",
                               "device": "press-7", "status": "ok"}
        assert s.value('motor_rpm{device="press-7"}') == 1200
        assert s.value('motor_on{device="press-7"}') == 1
        # The timestamp field is the sample's time.
        (series,) = s.api("/api/v1/query", {"query": "temp[1m]"})["result"]
        assert int(float(series["values"][-1][0]) * 1000) == now_ms
    finally:
        s.cleanup()


def test_line_protocol_and_user_properties(broker):
    s = start_sonde(broker)
    try:
        ns = time.time_ns()
        broker.publish("influx/hamburg/roof", f"weather,station=a temperature=12.5,humidity=40i {ns}\n"
                       f"weather,station=b temperature=13.25 {ns}\n", properties={"tenant": "acme"})
        vec = wait_value(s, 'weather_temperature{station="a"}', 12.5)
        assert labels(vec)["site"] == "hamburg"
        assert labels(vec)["tenant"] == "acme"
        assert s.value('weather_humidity{station="a"}') == 40
        assert s.value('weather_temperature{station="b"}') == 13.25
    finally:
        s.cleanup()


def test_otlp_metrics_and_traces_gzip_and_not(broker):
    import gzip
    s = start_sonde(broker)
    try:
        broker.publish("otlp/metrics", otlp_gauge("mqtt.otlp.plain", 3.5))
        broker.publish("otlp/metrics", gzip.compress(otlp_gauge("mqtt.otlp.gzipped", 4.5)))
        assert labels(wait_value(s, "mqtt_otlp_plain", 3.5))["job"] == "mqtt-device"
        wait_value(s, "mqtt_otlp_gzipped", 4.5)
        now = time.time_ns()
        trace_id = "5b8efff798038103d269b633813fc60c"
        req = traces_request(resource_spans("mqtt-svc", [
            otlp_span(trace_id, "eee19b7ec3c1b174", "root", now - 10_000_000, now)]))
        broker.publish("otlp/traces", req.SerializeToString())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = s.get(f"/api/v1/traces/{trace_id}")
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        spans = r.json()["data"]["spans"]
        assert [sp["name"] for sp in spans] == ["root"]
    finally:
        s.cleanup()


def test_malformed_message_is_counted_and_skipped(broker):
    s = start_sonde(broker)
    try:
        topic = "plant/p/l/d1/telemetry"
        broker.publish(topic, json.dumps({"seq": 1}))
        broker.publish(topic, b"{not json")
        broker.publish("otlp/metrics", b"\xff\xff\xff not protobuf")
        broker.publish(topic, json.dumps({"seq": 2}))
        wait_value(s, 'seq{device="d1"}', 2)
        assert broker_count(s, "malformed") == 2
        assert broker_count(s, "stored") == 2
        log = s.log_text()
        assert re.search(r"malformed.*plant/p/l/d1/telemetry|plant/p/l/d1/telemetry.*malformed", log), log
    finally:
        s.cleanup()


def publish_sequence(broker: Mosquitto, device: str, values: range, base_ms: int) -> None:
    # One mosquitto_pub per message is slow; -l sends one message per line.
    import subprocess
    lines = "\n".join(json.dumps({"seq": i, "timestamp": base_ms + i}) for i in values) + "\n"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-t", f"plant/x/y/{device}/telemetry", "-l"], input=lines.encode(), check=True,
                   timeout=60)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_qos1_messages_published_while_sonde_is_down_arrive(broker, protocol):
    s = start_sonde(broker, "--mqtt-protocol", protocol)
    try:
        base = int(time.time() * 1000) - 60_000
        publish_sequence(broker, "d2", range(0, 50), base)
        assert wait_count(s, 'seq{device="d2"}', 50, 15) == 50
        assert s.stop() == 0
        # Sonde is down: the broker holds these for its persistent session.
        publish_sequence(broker, "d2", range(50, 150), base)
        s.start()
        assert wait_count(s, 'seq{device="d2"}', 150, 20) == 150, s.log_text()
    finally:
        s.cleanup()


def test_kill9_mid_stream_and_broker_restart_lose_nothing(broker):
    s = start_sonde(broker)
    try:
        base = int(time.time() * 1000) - 120_000
        publish_sequence(broker, "d3", range(0, 300), base)
        # A crash while messages are arriving: what was acknowledged is in
        # the WAL; what was not is sent again by the broker.
        s.kill9()
        publish_sequence(broker, "d3", range(300, 400), base)
        s.start()
        wait_subscribed(s)
        broker.restart()
        publish_sequence(broker, "d3", range(400, 500), base)
        assert wait_count(s, 'seq{device="d3"}', 500, 30) == 500, s.log_text()
    finally:
        s.cleanup()


def test_policies_are_published_as_retained_messages(broker):
    s = start_sonde(broker)
    try:
        r = requests.put(f"{s.api_url}/api/v1/policies/checkout-sampling",
                         json={"scope": {"kind": "service", "name": "checkout"},
                               "trace_sampling_ratio": 0.25}, timeout=10)
        assert r.status_code == 200, r.text
        r = requests.put(f"{s.api_url}/api/v1/policies/everyone",
                         json={"scope": {"kind": "all"}, "min_log_severity": 13}, timeout=10)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        got = {}
        while time.monotonic() < deadline:
            got = {t: json.loads(b) for t, b in broker.retained("sonde/policies/#", timeout=1) if b}
            if len(got) == 2:
                break
        assert set(got) == {"sonde/policies/service/checkout", "sonde/policies/all"}, got
        assert got["sonde/policies/service/checkout"]["trace_sampling_ratio"] == 0.25
        assert got["sonde/policies/all"]["min_log_severity"] == 13
        assert got["sonde/policies/all"]["trace_sampling_ratio"] is None
        assert requests.delete(f"{s.api_url}/api/v1/policies/checkout-sampling", timeout=10).status_code in (200, 204)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = {t: b for t, b in broker.retained("sonde/policies/#", timeout=1) if b}
            if len(got) == 1:
                break
        assert set(got) == {"sonde/policies/all"}, got
    finally:
        s.cleanup()


# -- Sparkplug B ----------------------------------------------------------
# A minimal protobuf writer: the Sparkplug B Payload has no published
# Python package worth depending on for four fields.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int, data: bytes | int) -> bytes:
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(data)
    return key + _varint(len(data)) + data


def sparkplug_metric(name: str | None, alias: int | None, double: float) -> bytes:
    import struct
    m = b""
    if name is not None:
        m += _field(1, 2, name.encode())
    if alias is not None:
        m += _field(2, 0, alias)
    m += _field(4, 0, 10)  # datatype Double
    m += _varint((13 << 3) | 1) + struct.pack("<d", double)
    return m


def sparkplug_payload(metrics: list[bytes], seq: int) -> bytes:
    p = _field(1, 0, int(time.time() * 1000))
    for m in metrics:
        p += _field(2, 2, m)
    return p + _field(3, 0, seq)


def test_sparkplug_birth_then_data_by_alias(broker):
    s = start_sonde(broker)
    try:
        broker.publish("spBv1.0/factory/NBIRTH/edge1", sparkplug_payload(
            [sparkplug_metric("Boiler/Pressure", 7, 1.5)], 0))
        broker.publish("spBv1.0/factory/NDATA/edge1", sparkplug_payload(
            [sparkplug_metric(None, 7, 2.75)], 1))
        vec = wait_value(s, "{__name__=~\"(?i)boiler.*pressure\"}", 2.75)
        l = labels(vec)
        assert l.get("sparkplug_group") == "factory" and l.get("sparkplug_node") == "edge1", l
    finally:
        s.cleanup()


def test_json_string_fields_as_a_log_record(broker):
    s = start_sonde(broker, "--json-string-fields", "log")
    try:
        broker.publish("plant/oslo/l2/pump-3/telemetry", json.dumps({
            "pressure": 2.5, "state": "cavitation detected", "level": "warn"}))
        vec = wait_value(s, "pressure", 2.5)
        # The strings are a log record, not labels.
        assert "state" not in labels(vec) and labels(vec)["device"] == "pump-3"
        deadline = time.monotonic() + 10
        logs = []
        while time.monotonic() < deadline and not logs:
            logs = s.api("/api/v1/logs", {"contains": "cavitation"})["logs"]
            time.sleep(0.1)
        assert len(logs) == 1, logs
        (rec,) = logs
        assert rec["attributes"]["state"] == "cavitation detected", rec
        assert rec["resource"]["device"] == "pump-3", rec
    finally:
        s.cleanup()
