"""Live PromQL over Server-Sent Events: a chart's newest points are pushed."""

from __future__ import annotations

import json
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from harness import SseStream


def push_gauge(sonde, value: float, t_ns: int) -> None:
    req = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="live"))]),
        scope_metrics=[ScopeMetrics(metrics=[Metric(
            name="queue_depth", gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=t_ns, as_double=value)]),
        )])],
    )])
    r = sonde.http.post(sonde.otlp_http_metrics_url, data=req.SerializeToString(),
                        headers={"content-type": "application/x-protobuf"}, timeout=5)
    assert r.status_code == 200, r.text


def values(data: str) -> list[float]:
    result = json.loads(data)["result"]
    return [float(v) for s in result for _, v in s["values"]]


def test_new_points_are_pushed_within_a_second_or_two(sonde):
    push_gauge(sonde, 7.0, time.time_ns() - 2_000_000_000)
    stream = SseStream(sonde.api_url, "/api/v1/stream/query_range?query=queue_depth&range=1m&step=1s")
    try:
        assert stream.status == 200
        kind, data = stream.next_event(5)
        assert kind == "snapshot"
        assert values(data) and set(values(data)) == {7.0}
        push_gauge(sonde, 42.0, time.time_ns())
        sent = time.monotonic()
        seen = None
        while time.monotonic() - sent < 3:
            ev = stream.next_event(3)
            assert ev is not None and ev[0] == "points", ev
            if 42.0 in values(ev[1]):
                seen = time.monotonic() - sent
                break
        assert seen is not None and seen < 2.5, "the new value was not pushed in time"
    finally:
        stream.close()


def test_a_bad_query_is_an_error_response_not_a_stream(sonde):
    r = sonde.get("/api/v1/stream/query_range", params={"query": "rate(x[5m]"})
    assert r.status_code == 400
    assert r.json()["errorType"] == "bad_data"
    r = sonde.get("/api/v1/stream/query_range", params={"query": "x", "range": "1h", "step": "100ms"})
    assert r.status_code == 400 and "11,000" in r.json()["error"]


def test_several_queries_share_one_stream_and_the_last_step_is_resent(sonde):
    push_gauge(sonde, 3.0, time.time_ns() - 1_000_000_000)
    stream = SseStream(sonde.api_url,
                       "/api/v1/stream/query_range?query=queue_depth&query=queue_depth*2&range=30s&step=1s")
    try:
        kind, data = stream.next_event(5)
        assert kind == "snapshot"
        results = json.loads(data)["results"]
        assert [r["resultType"] for r in results] == ["matrix", "matrix"]
        assert set(float(v) for _, v in results[1]["result"][0]["values"]) == {6.0}
        kind, data = stream.next_event(3)
        assert kind == "points"
        first = [t for _, s in enumerate(json.loads(data)["results"][0]["result"]) for t, _ in s["values"]]
        kind, data = stream.next_event(3)
        second = [t for s in json.loads(data)["results"][0]["result"] for t, _ in s["values"]]
        assert first and second and second[0] == first[-1], (first, second)
    finally:
        stream.close()
    many = "&".join(["query=queue_depth"] * 21)
    r = sonde.get(f"/api/v1/stream/query_range?{many}")
    assert r.status_code == 400 and "at most 20" in r.json()["error"]


def test_live_queries_are_capped_and_a_closed_one_frees_its_place(sonde_factory):
    s = sonde_factory("--max-live-queries", "2")
    path = "/api/v1/stream/query_range?query=vector(1)&range=1m&step=1s"
    first, second = SseStream(s.api_url, path), SseStream(s.api_url, path)
    try:
        assert first.status == 200 and second.status == 200
        r = s.get(path)
        assert r.status_code == 429, r.text
        assert "max_live_queries" in r.json()["error"]
        first.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            third = SseStream(s.api_url, path)
            if third.status == 200:
                third.close()
                break
            third.close()
            time.sleep(0.2)
        else:
            raise AssertionError("the closed stream's place was never freed")
    finally:
        first.close()
        second.close()
