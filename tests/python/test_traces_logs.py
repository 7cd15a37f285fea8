"""Traces, logs and events end to end: the real OpenTelemetry Python SDK (and
hand-built OTLP requests) export to a running Sonde over OTLP/gRPC and
OTLP/HTTP; Sonde's API must give back exactly what was sent."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from harness import (
    GRPC_LOGS,
    GRPC_TRACES,
    ROOT,
    TRUNCATION_MARKER,
    SseStream,
    _resource,
    grpc_export,
    key_values,
    logs_request,
    new_span_id,
    new_trace_id,
    otlp_json,
    otlp_log,
    otlp_ok,
    otlp_proto_from_json,
    otlp_span,
    post_otlp,
    resource_logs,
    resource_spans,
    traces_request,
)

MS = 1_000_000
SEC = 1_000_000_000
# OTLP span kinds and status codes.
INTERNAL, SERVER, CLIENT, CONSUMER = 1, 2, 3, 5
STATUS_OK, STATUS_ERROR = 1, 2


def now_us_ns() -> int:
    """Now in ns, rounded down to a whole microsecond (Jaeger's unit)."""
    return time.time_ns() // 1000 * 1000


def hex16(n: int) -> str:
    return format(n, "016x")


def hex32(n: int) -> str:
    return format(n, "032x")


def recording(exporter_cls, ok_value):
    """The exporter class, recording every export's result and what it sent."""

    class Recording(exporter_cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.results: list = []
            self.sent: list = []

        def export(self, batch, *a, **kw):
            result = super().export(batch, *a, **kw)
            self.results.append(result)
            self.sent.extend(batch)
            return result

        def assert_all_ok(self):
            assert self.results, "the SDK exported nothing"
            assert all(r == ok_value for r in self.results), f"export failed: {self.results}"

    return Recording


def span_exporter(sonde, transport: str):
    if transport == "grpc":
        return recording(GrpcSpanExporter, SpanExportResult.SUCCESS)(
            endpoint=sonde.otlp_grpc_endpoint, insecure=True, timeout=10
        )
    return recording(HttpSpanExporter, SpanExportResult.SUCCESS)(endpoint=sonde.traces_url, timeout=10)


def log_exporter(sonde, transport: str):
    if transport == "grpc":
        return recording(GrpcLogExporter, LogExportResult.SUCCESS)(
            endpoint=sonde.otlp_grpc_endpoint, insecure=True, timeout=10
        )
    return recording(HttpLogExporter, LogExportResult.SUCCESS)(endpoint=sonde.logs_url, timeout=10)


def tracer_provider(resource, exporter) -> TracerProvider:
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    # A long delay: spans are exported when the test calls force_flush().
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000))
    return provider


def sid(span) -> str:
    return hex16(span.get_span_context().span_id)


def tid(span) -> str:
    return hex32(span.get_span_context().trace_id)


def get_trace(sonde, trace_id: str) -> dict:
    data = sonde.api(f"/api/v1/traces/{trace_id}")
    assert data["traceId"] == trace_id, data
    return data


def logs(sonde, path: str = "/api/v1/logs", **params) -> list[dict]:
    """One page of a log or event search (asserting it is the only page)."""
    data = sonde.api(path, params)
    assert data["nextCursor"] is None, f"{path} {params}: more than one page: {data}"
    return data["logs"]


def bodies(records: list[dict]) -> list[str]:
    return [r["body"] for r in records]


def trace_ids(sonde, **params) -> list[str]:
    return [t["traceId"] for t in sonde.api("/api/v1/traces", params)]


def jaeger_get(sonde, path: str, params=None) -> requests.Response:
    return requests.get(f"{sonde.api_url}{path}", params=params, timeout=30)


def jaeger_tags(tags: list[dict]) -> dict:
    out = {}
    for t in tags:
        assert t["key"] not in out, f"tag {t['key']} twice: {tags}"
        out[t["key"]] = (t["type"], t["value"])
    return out


# -- 1. a nested trace from the SDK ----------------------------------------

ROOT_ATTRS = {
    "http.route": "/checkout",
    "app.str": "hello",
    "app.int": 42,
    "app.float": 2.5,
    "app.bool": True,
    "app.strs": ["a", "b"],
    "app.ints": [1, 2, 3],
    "app.floats": [0.5, 1.5],
    "app.bools": [True, False],
}


@pytest.mark.parametrize("transport", ["grpc", "http"], ids=["grpc", "http-protobuf"])
def test_sdk_trace_reads_back_as_sent(sonde, transport):
    service = f"shop-{transport}"
    host = f"node-{transport}"
    resource = Resource.create({"service.name": service, "host.name": host, "deployment.environment": "e2e"})
    exporter = span_exporter(sonde, transport)
    provider = tracer_provider(resource, exporter)
    tracer = provider.get_tracer("sonde.tests.traces", "2.0.1")
    t0 = now_us_ns() - 60 * SEC
    at = lambda ms: t0 + ms * MS  # noqa: E731
    try:
        # The span the link points at, in a trace of its own.
        other = tracer.start_span("warm cache", context=Context(), start_time=at(-5000))
        other.end(end_time=at(-4000))
        with tracer.start_as_current_span(
            "GET /checkout", context=Context(), kind=SpanKind.SERVER, attributes=ROOT_ATTRS,
            start_time=at(0), end_on_exit=False,
        ) as root:
            with tracer.start_as_current_span(
                "validate cart", links=[Link(other.get_span_context(), {"link.reason": "warmed-by"})],
                start_time=at(10), end_on_exit=False,
            ) as c1:
                c1.end(end_time=at(60))
            with tracer.start_as_current_span("charge card", start_time=at(100), end_on_exit=False) as c2:
                with tracer.start_as_current_span(
                    "POST /payments", kind=SpanKind.CLIENT,
                    attributes={"http.request.method": "POST", "server.port": 8443},
                    start_time=at(120), end_on_exit=False,
                ) as gc:
                    gc.add_event("retry", {"attempt": 2}, timestamp=at(200))
                    gc.record_exception(ValueError("card declined"), timestamp=at(390))
                    gc.set_status(Status(StatusCode.ERROR, "payment failed"))
                    gc.end(end_time=at(400))
                c2.end(end_time=at(450))
            root.end(end_time=at(500))
        assert provider.force_flush(20_000), "force_flush timed out"
        exporter.assert_all_ok()
        assert len(exporter.sent) == 5

        trace_id = tid(root)
        ids = {"root": sid(root), "c1": sid(c1), "c2": sid(c2), "gc": sid(gc)}
        data = get_trace(sonde, trace_id)
        spans = data["spans"]
        # Sorted by start time; the linked trace's span is not part of it.
        assert [s["name"] for s in spans] == ["GET /checkout", "validate cart", "charge card", "POST /payments"]
        by = {s["name"]: s for s in spans}
        r, v, c, p = by["GET /checkout"], by["validate cart"], by["charge card"], by["POST /payments"]
        assert [s["spanId"] for s in spans] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]
        assert all(s["traceId"] == trace_id for s in spans)
        assert (r["parentSpanId"], v["parentSpanId"], c["parentSpanId"], p["parentSpanId"]) == (
            "", ids["root"], ids["root"], ids["c2"],
        )
        assert [s["kind"] for s in spans] == ["server", "internal", "internal", "client"]
        for s in spans:
            assert (s["service"], s["host"]) == (service, host), s
            assert s["scope"] == {"name": "sonde.tests.traces", "version": "2.0.1"}, s
            assert s["resource"]["service.name"] == service
            assert s["resource"]["host.name"] == host
            assert s["resource"]["deployment.environment"] == "e2e"
            assert s["resource"]["telemetry.sdk.language"] == "python"
            assert s["traceState"] == ""
        # Times as decimal strings in ns; durations as numbers.
        assert (r["startTimeUnixNano"], r["endTimeUnixNano"], r["durationNs"]) == (str(at(0)), str(at(500)), 500 * MS)
        assert (p["startTimeUnixNano"], p["endTimeUnixNano"], p["durationNs"]) == (str(at(120)), str(at(400)), 280 * MS)
        assert v["durationNs"] == 50 * MS and c["durationNs"] == 350 * MS
        # Typed attribute values, arrays as JSON arrays.
        assert r["attributes"] == ROOT_ATTRS
        assert type(r["attributes"]["app.int"]) is int and type(r["attributes"]["app.float"]) is float
        assert p["attributes"] == {"http.request.method": "POST", "server.port": 8443}
        assert v["attributes"] == {} and c["attributes"] == {}
        # Status.
        assert r["status"] == {"code": "unset", "message": ""}
        assert p["status"] == {"code": "error", "message": "payment failed"}
        # Events: the plain one and the recorded exception.
        assert [(e["name"], e["timeUnixNano"]) for e in p["events"]] == [
            ("retry", str(at(200))), ("exception", str(at(390))),
        ]
        assert p["events"][0]["attributes"] == {"attempt": 2}
        exc = p["events"][1]["attributes"]
        assert exc["exception.type"] == "ValueError"
        assert exc["exception.message"] == "card declined"
        assert "ValueError: card declined" in exc["exception.stacktrace"]
        assert r["events"] == [] and r["links"] == []
        # The link to the other trace.
        assert v["links"] == [{
            "traceId": tid(other), "spanId": sid(other), "traceState": "",
            "attributes": {"link.reason": "warmed-by"},
        }]
        assert data["logs"] == []
        # The other trace is a trace of its own.
        other_spans = get_trace(sonde, tid(other))["spans"]
        assert [(s["name"], s["parentSpanId"], s["durationNs"]) for s in other_spans] == [("warm cache", "", SEC)]

        # The same spans delivered again (an exporter retry) appear once.
        assert exporter.export(exporter.sent[:]) == SpanExportResult.SUCCESS
        again = get_trace(sonde, trace_id)["spans"]
        assert [s["spanId"] for s in again] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]

        # -- the same trace through the Jaeger API --
        resp = jaeger_get(sonde, f"/api/traces/{trace_id}")
        assert resp.status_code == 200, resp.text
        jdata = resp.json()["data"]
        assert len(jdata) == 1, jdata
        jt = jdata[0]
        assert jt["traceID"] == trace_id
        jspans = {s["operationName"]: s for s in jt["spans"]}
        assert set(jspans) == {"GET /checkout", "validate cart", "charge card", "POST /payments"}
        for s in jt["spans"]:
            assert s["traceID"] == trace_id
            proc = jt["processes"][s["processID"]]
            assert proc["serviceName"] == service
            ptags = jaeger_tags(proc["tags"])
            assert ptags["host.name"] == ("string", host), proc
        jr, jv, jc, jp = (jspans[n] for n in ["GET /checkout", "validate cart", "charge card", "POST /payments"])
        assert [jr["spanID"], jv["spanID"], jc["spanID"], jp["spanID"]] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]
        refs = lambda s: sorted((x["refType"], x["traceID"], x["spanID"]) for x in s["references"])  # noqa: E731
        assert refs(jr) == []
        assert refs(jv) == sorted([("CHILD_OF", trace_id, ids["root"]), ("FOLLOWS_FROM", tid(other), sid(other))])
        assert refs(jc) == [("CHILD_OF", trace_id, ids["root"])]
        assert refs(jp) == [("CHILD_OF", trace_id, ids["c2"])]
        # Microseconds.
        assert (jr["startTime"], jr["duration"]) == (at(0) // 1000, 500_000)
        assert (jp["startTime"], jp["duration"]) == (at(120) // 1000, 280_000)
        assert (jv["duration"], jc["duration"]) == (50_000, 350_000)
        rt = jaeger_tags(jr["tags"])
        assert rt["span.kind"] == ("string", "server")
        assert rt["http.route"] == ("string", "/checkout")
        assert rt["app.int"] == ("int64", 42)
        assert rt["app.float"] == ("float64", 2.5)
        assert rt["app.bool"] == ("bool", True)
        assert "error" not in rt
        pt = jaeger_tags(jp["tags"])
        assert pt["span.kind"] == ("string", "client")
        assert pt["error"] == ("bool", True)
        assert pt["server.port"] == ("int64", 8443)
        # Span events as Jaeger logs, the name in the `event` field.
        assert [l["timestamp"] for l in jp["logs"]] == [at(200) // 1000, at(390) // 1000]
        f0, f1 = (jaeger_tags(l["fields"]) for l in jp["logs"])
        assert f0 == {"event": ("string", "retry"), "attempt": ("int64", 2)}
        assert f1["event"] == ("string", "exception")
        assert f1["exception.type"] == ("string", "ValueError")
        assert f1["exception.message"] == ("string", "card declined")
    finally:
        provider.shutdown()


# -- 2. logs inside spans, from the SDK's logging handler ------------------


@pytest.mark.parametrize("transport", ["grpc", "http"], ids=["grpc", "http-protobuf"])
def test_sdk_logs_inside_spans(sonde, transport):
    service, host = f"orders-{transport}", f"box-{transport}"
    resource = Resource.create({"service.name": service, "host.name": host})
    span_exp = span_exporter(sonde, transport)
    provider = tracer_provider(resource, span_exp)
    tracer = provider.get_tracer("sonde.tests.logs")
    log_exp = log_exporter(sonde, transport)
    log_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp, schedule_delay_millis=3_600_000))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=log_provider)
    logger_name = f"sonde.tests.orders.{transport}"
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)

    def pause():
        time.sleep(0.003)  # distinct record times, so newest-first is one order

    try:
        with tracer.start_as_current_span("handle order", context=Context(), kind=SpanKind.SERVER) as root:
            logger.debug("loading cart %s", "c-42")
            pause()
            logger.info("order placed", extra={"order.id": "o-17", "attempt": 3})
            pause()
            logger.warning("inventory low for sku-1")
            pause()
            with tracer.start_as_current_span("send receipt") as child:
                logger.error("payment retry failed", extra={"order.id": "o-17"})
                pause()
                logger.info("receipt emailed")
                pause()
        logger.info("outside any span")
        assert provider.force_flush(20_000)
        assert log_provider.force_flush(20_000)
        span_exp.assert_all_ok()
        log_exp.assert_all_ok()
        assert len(log_exp.sent) == 6

        trace_id, root_id, child_id = tid(root), sid(root), sid(child)
        newest_first = [
            "receipt emailed", "payment retry failed", "inventory low for sku-1", "order placed", "loading cart c-42",
        ]

        # The trace lists the logs that carry its id.
        data = get_trace(sonde, trace_id)
        assert [s["name"] for s in data["spans"]] == ["handle order", "send receipt"]
        in_trace = sorted(data["logs"], key=lambda l: int(l["timeUnixNano"]))
        assert bodies(in_trace) == newest_first[::-1]
        assert [l["spanId"] for l in in_trace] == [root_id, root_id, root_id, child_id, child_id]
        assert all(l["traceId"] == trace_id for l in in_trace)

        # Search by trace id: newest first, every field as sent.
        got = logs(sonde, traceId=trace_id)
        assert bodies(got) == newest_first
        by = {l["body"]: l for l in got}
        want_sev = {
            "loading cart c-42": (5, "DEBUG"), "order placed": (9, "INFO"), "inventory low for sku-1": (13, "WARN"),
            "payment retry failed": (17, "ERROR"), "receipt emailed": (9, "INFO"),
        }
        for body, l in by.items():
            assert (l["severityNumber"], l["severityText"]) == want_sev[body], l
            assert (l["service"], l["host"]) == (service, host), l
            assert l["scope"]["name"] == logger_name, l
            assert l["resource"]["service.name"] == service
            assert l["eventName"] == ""
            assert l["attributes"]["code.function"] == "test_sdk_logs_inside_spans", l
            assert isinstance(l["attributes"]["code.lineno"], int), l
            assert int(l["observedTimeUnixNano"]) >= int(l["timeUnixNano"]) > 0
        assert by["order placed"]["attributes"]["order.id"] == "o-17"
        assert by["order placed"]["attributes"]["attempt"] == 3
        assert by["payment retry failed"]["attributes"]["order.id"] == "o-17"
        assert "order.id" not in by["receipt emailed"]["attributes"]

        assert bodies(logs(sonde, traceId=trace_id, spanId=child_id)) == newest_first[:2]
        # Severity: a minimum, by name or number.
        assert bodies(logs(sonde, traceId=trace_id, severity="warn")) == newest_first[1:3]
        assert bodies(logs(sonde, traceId=trace_id, severity="13")) == newest_first[1:3]
        assert bodies(logs(sonde, traceId=trace_id, severity="error")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, severity="17")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, severity="debug")) == newest_first
        assert bodies(logs(sonde, traceId=trace_id, contains="retry")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, contains="cart")) == ["loading cart c-42"]
        assert bodies(logs(sonde, attr="order.id=o-17")) == ["payment retry failed", "order placed"]
        assert bodies(logs(sonde, attr="attempt=3")) == ["order placed"]
        assert bodies(logs(sonde, contains="no such text")) == []

        # All of the service's logs, the one outside a span first.
        everything = logs(sonde, service=service)
        assert bodies(everything) == ["outside any span"] + newest_first
        assert (everything[0]["traceId"], everything[0]["spanId"]) == ("", "")
        assert bodies(logs(sonde, host=host)) == bodies(everything)
        assert logs(sonde, host="no-such-host") == []
        assert logs(sonde, service="no-such-service") == []

        # Pages of two walk every record exactly once, in order.
        assert walk_pages(sonde, "/api/v1/logs", {"service": service}, 2) == bodies(everything)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
        log_provider.shutdown()


def walk_pages(sonde, path: str, params: dict, limit: int, key=lambda l: l["body"]) -> list:
    out, cursor = [], None
    for _ in range(100):
        page_params = {**params, "limit": limit}
        if cursor is not None:
            page_params["cursor"] = cursor
        data = sonde.api(path, page_params)
        assert len(data["logs"]) <= limit, data
        out.extend(key(l) for l in data["logs"])
        cursor = data["nextCursor"]
        if cursor is None:
            return out
        assert data["logs"], f"an empty page with a next cursor: {data}"
    raise AssertionError(f"more than 100 pages: {out}")


def test_pagination_over_records_with_equal_times(sonde):
    """Many records at the same nanosecond: pages still neither repeat nor skip."""
    t = now_us_ns() - 30 * SEC
    times = [t] * 5 + [t + 1] * 3 + [t - 1000] * 4
    recs = [otlp_log(ts, f"rec-{i:02d}", attrs={"i": i}) for i, ts in enumerate(times)]
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("pager", recs))))
    everything = logs(sonde, service="pager", limit=100)
    assert sorted(bodies(everything)) == [f"rec-{i:02d}" for i in range(12)]
    # Newest first.
    got_times = [int(l["timeUnixNano"]) for l in everything]
    assert got_times == sorted(got_times, reverse=True)
    key = lambda l: (int(l["timeUnixNano"]), l["body"])  # noqa: E731
    for limit in (1, 2, 3, 5):
        walked = walk_pages(sonde, "/api/v1/logs", {"service": "pager"}, limit, key=key)
        assert sorted(b for _, b in walked) == [f"rec-{i:02d}" for i in range(12)], f"limit={limit}: {walked}"
        assert [t for t, _ in walked] == sorted(got_times, reverse=True), f"limit={limit}: {walked}"


# -- 3. events --------------------------------------------------------------


def json_log(time_ns: int, body: str, attrs: dict, event_name: str = "", severity: int = 9) -> dict:
    rec = otlp_json(otlp_log(time_ns, body, severity=severity, attrs=attrs))
    if event_name:
        rec["eventName"] = event_name
    return rec


def json_logs_request(service: str, records: list[dict], host: str | None = None) -> dict:
    return {
        "resourceLogs": [{
            "resource": otlp_json(_resource(service, host, None)),
            "scopeLogs": [{"scope": {"name": "sonde.tests.events", "version": "0.1"}, "logRecords": records}],
        }]
    }


def test_events_by_name_and_attributes(sonde):
    t = now_us_ns() - 30 * SEC
    svc = "web-frontend"
    otlp_ok(post_otlp(sonde.logs_url, json_logs_request(svc, [
        json_log(t + 1 * MS, "checkout 1", {"user.id": "u-1", "session.id": "s-1"}, "cart.checkout"),
        json_log(t + 2 * MS, "checkout 2", {"user.id": "u-2", "session.id": "s-2"}, "cart.checkout"),
        json_log(t + 3 * MS, "viewed", {"user.id": "u-1", "session.id": "s-1"}, "page.view"),
        json_log(t + 4 * MS, "plain log line", {"user.id": "u-1", "session.id": "s-1"}),
    ])))
    # ... and one through the API port's OTLP endpoint.
    r = post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/logs", json_logs_request(svc, [
        json_log(t + 5 * MS, "checkout 3", {"user.id": "u-3", "session.id": "s-3"}, "cart.checkout"),
    ]))
    otlp_ok(r)
    # The SDK has no event API in this version: `event.name` as an attribute.
    log_exp = log_exporter(sonde, "http")
    log_provider = LoggerProvider(resource=Resource.create({"service.name": svc}), shutdown_on_exit=False)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp, schedule_delay_millis=3_600_000))
    handler = LoggingHandler(level=logging.INFO, logger_provider=log_provider)
    logger = logging.getLogger("sonde.tests.events.sdk")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.info("button clicked", extra={"event.name": "ui.click", "user.id": "u-1", "session.id": "s-9"})
        assert log_provider.force_flush(20_000)
        log_exp.assert_all_ok()
    finally:
        logger.removeHandler(handler)
        log_provider.shutdown()

    checkout = logs(sonde, "/api/v1/events", name="cart.checkout")
    assert bodies(checkout) == ["checkout 3", "checkout 2", "checkout 1"]
    assert all(e["eventName"] == "cart.checkout" and e["service"] == svc for e in checkout)
    assert [(e["attributes"]["user.id"], e["attributes"]["session.id"]) for e in checkout] == [
        ("u-3", "s-3"), ("u-2", "s-2"), ("u-1", "s-1"),
    ]
    assert checkout[2]["timeUnixNano"] == str(t + 1 * MS)
    assert checkout[2]["scope"] == {"name": "sonde.tests.events", "version": "0.1"}

    # Every event, never the plain log.
    all_events = logs(sonde, "/api/v1/events")
    assert bodies(all_events) == ["button clicked", "checkout 3", "viewed", "checkout 2", "checkout 1"]
    click = all_events[0]
    assert click["eventName"] == "ui.click"
    assert click["attributes"]["event.name"] == "ui.click"
    assert (click["attributes"]["user.id"], click["attributes"]["session.id"]) == ("u-1", "s-9")
    assert bodies(logs(sonde, "/api/v1/events", name="ui.click")) == ["button clicked"]

    # Attribute filters, alone and with the name.
    assert bodies(logs(sonde, "/api/v1/events", attr="user.id=u-1")) == ["button clicked", "viewed", "checkout 1"]
    assert bodies(logs(sonde, "/api/v1/events", name="cart.checkout", attr="user.id=u-1")) == ["checkout 1"]
    assert bodies(logs(sonde, "/api/v1/events", attr=["user.id=u-1", "session.id=s-1"])) == ["viewed", "checkout 1"]
    assert logs(sonde, "/api/v1/events", name="no.such.event") == []

    # Events are log records too.
    assert bodies(logs(sonde, "/api/v1/logs", event="*")) == bodies(all_events)
    assert bodies(logs(sonde, "/api/v1/logs", event="page.view")) == ["viewed"]
    assert bodies(logs(sonde, "/api/v1/logs", attr="user.id=u-1")) == [
        "button clicked", "plain log line", "viewed", "checkout 1",
    ]
    plain = logs(sonde, "/api/v1/logs", contains="plain")
    assert [(l["body"], l["eventName"]) for l in plain] == [("plain log line", "")]


# -- 4. trace search --------------------------------------------------------


def test_trace_search_filters(sonde):
    now = now_us_ns()
    ids = {k: new_trace_id() for k in ["T0", "T1", "T2", "T3", "T4"]}
    start = {
        "T0": now - 2 * 3600 * SEC, "T1": now - 9 * 60 * SEC, "T2": now - 8 * 60 * SEC,
        "T3": now - 7 * 60 * SEC, "T4": now - 6 * 60 * SEC,
    }
    root = {k: new_span_id() for k in ids}

    def span(k, name, dur_ms, offset_ms=0, parent="", span_id=None, **kw):
        s0 = start[k] + offset_ms * MS
        return otlp_span(ids[k], span_id or new_span_id(), name, s0, s0 + dur_ms * MS, parent=parent, **kw)

    # T0, T1 over gRPC.
    req = traces_request(
        resource_spans("search-api", [
            span("T0", "GET /users", 100, span_id=root["T0"], kind=SERVER, attrs={"tenant": "acme", "http.route": "/users"}),
            span("T1", "GET /users", 50, span_id=root["T1"], kind=SERVER, status=STATUS_OK,
                 attrs={"tenant": "acme", "http.route": "/users"}),
        ]),
        resource_spans("search-db", [span("T1", "db query", 20, offset_ms=10, parent=root["T1"], kind=CLIENT)]),
    )
    resp = ExportTraceServiceResponse.FromString(grpc_export(sonde.otlp_grpc_endpoint, GRPC_TRACES, req))
    assert not resp.HasField("partial_success"), resp
    # T2, T3 over HTTP, protobuf, gzipped.
    req = traces_request(
        resource_spans("search-api", [
            span("T2", "GET /orders", 400, span_id=root["T2"], kind=SERVER, attrs={"tenant": "globex", "http.route": "/orders"}),
        ]),
        resource_spans("search-db", [
            span("T2", "SELECT orders", 200, offset_ms=50, parent=root["T2"], kind=CLIENT, status=STATUS_ERROR,
                 status_message="deadlock"),
        ]),
        resource_spans("search-worker", [span("T3", "process job", 1200, span_id=root["T3"], kind=CONSUMER,
                                              attrs={"tenant": "acme"})]),
    )
    otlp_ok(post_otlp(sonde.traces_url, req, gzipped=True))
    # T4 as JSON on the API port.
    req = traces_request(resource_spans("search-api", [
        span("T4", "GET /users", 300, span_id=root["T4"], kind=SERVER, status=STATUS_ERROR,
             attrs={"tenant": "acme", "http.route": "/users"}),
    ]))
    otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/traces", otlp_json(req)))

    T = lambda *names: [ids[n] for n in names]  # noqa: E731
    # The default window is the last hour: T0 is older.
    assert trace_ids(sonde) == T("T4", "T3", "T2", "T1")
    assert trace_ids(sonde, service="search-api") == T("T4", "T2", "T1")
    assert trace_ids(sonde, service="search-db") == T("T2", "T1")
    assert trace_ids(sonde, service="search-worker") == T("T3")
    assert trace_ids(sonde, service="nobody") == []
    assert trace_ids(sonde, name="GET /users") == T("T4", "T1")
    assert trace_ids(sonde, name="SELECT orders") == T("T2")
    assert trace_ids(sonde, minDuration="250ms") == T("T4", "T3", "T2")
    assert trace_ids(sonde, minDuration="1s") == T("T3")
    assert trace_ids(sonde, minDuration="250ms", maxDuration="350ms") == T("T4")
    assert trace_ids(sonde, maxDuration="100ms") == T("T1")
    assert trace_ids(sonde, status="error") == T("T4", "T2")
    assert trace_ids(sonde, attr="tenant=acme") == T("T4", "T3", "T1")
    assert trace_ids(sonde, attr="tenant=globex") == T("T2")
    assert trace_ids(sonde, attr=["tenant=acme", "http.route=/users"]) == T("T4", "T1")
    assert trace_ids(sonde, service="search-api", name="GET /users", minDuration="250ms") == T("T4")
    assert trace_ids(sonde, limit=2) == T("T4", "T3")
    # Explicit windows, as Unix seconds and as RFC 3339.
    assert trace_ids(sonde, start=(now - 3 * 3600 * SEC) / SEC) == T("T4", "T3", "T2", "T1", "T0")
    rfc = lambda ns: datetime.fromtimestamp(ns / SEC, tz=timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    assert trace_ids(sonde, start=rfc(start["T0"] - 60 * SEC), end=rfc(start["T0"] + 60 * SEC)) == T("T0")
    assert trace_ids(sonde, start=(now - 3 * 3600 * SEC) / SEC, name="GET /users") == T("T4", "T1", "T0")

    # The summary of a trace.
    (t2,) = [t for t in sonde.api("/api/v1/traces", {"status": "error"}) if t["traceId"] == ids["T2"]]
    assert t2 == {
        "traceId": ids["T2"], "rootService": "search-api", "rootName": "GET /orders",
        "startTimeUnixNano": str(start["T2"]), "durationNs": 400 * MS, "spanCount": 2, "errorCount": 1,
        "services": {"search-api": 1, "search-db": 1},
    }
    (t3,) = sonde.api("/api/v1/traces", {"service": "search-worker"})
    assert (t3["rootName"], t3["spanCount"], t3["errorCount"], t3["durationNs"]) == ("process job", 1, 0, 1200 * MS)

    # Bad parameters are 400s.
    for bad in [{"minDuration": "fast"}, {"status": "bogus"}, {"attr": "novalue"}, {"start": "yesterday"}]:
        r = sonde.get("/api/v1/traces", bad)
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"
        assert r.json()["status"] == "error"


# -- 5. the OTLP project's JSON examples ------------------------------------

EXAMPLE_TRACE_ID = "5b8efff798038103d269b633813fc60c"
EXAMPLE_T = 1544712660  # seconds, the examples' time


def example(name: str) -> dict:
    shared = os.environ.get("SONDE_SHARED")
    base = Path(shared) if shared else ROOT.parent / "shared"
    path = base / "data" / "otlp-examples" / name
    if not path.is_file():
        message = f"OTLP example {name} not found at {path} (set SONDE_SHARED to the shared folder)"
        if os.environ.get("SONDE_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(path.read_text())


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_otlp_examples(sonde_factory, encoding):
    trace_doc, logs_doc, events_doc = example("trace.json"), example("logs.json"), example("events.json")
    sonde = sonde_factory("--retention", "0")
    if encoding == "json":
        otlp_ok(post_otlp(sonde.traces_url, trace_doc), "trace.json")
        otlp_ok(post_otlp(sonde.logs_url, logs_doc), "logs.json")
    else:
        # As protobuf, on the API port.
        otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/traces",
                          otlp_proto_from_json(trace_doc, ExportTraceServiceRequest)), "trace.json")
        otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/logs",
                          otlp_proto_from_json(logs_doc, ExportLogsServiceRequest)), "logs.json")
    # events.json uses `eventName`, newer than these protobuf classes: JSON.
    otlp_ok(post_otlp(sonde.logs_url, events_doc), "events.json")

    data = get_trace(sonde, EXAMPLE_TRACE_ID)
    assert data["spans"] == [{
        "traceId": EXAMPLE_TRACE_ID,
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "traceState": "",
        "flags": 0,
        "name": "I'm a server span",
        "kind": "server",
        "service": "my.service",
        "host": "",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "durationNs": 1_000_000_000,
        "status": {"code": "unset", "message": ""},
        "attributes": {"my.span.attr": "some value"},
        "resource": {"service.name": "my.service"},
        "scope": {"name": "my.library", "version": "1.0.0"},
        "events": [],
        "links": [],
    }]
    # The upper-case id of the file names the same trace.
    upper = sonde.api(f"/api/v1/traces/{EXAMPLE_TRACE_ID.upper()}")
    assert (upper["traceId"], upper["spans"]) == (EXAMPLE_TRACE_ID, data["spans"])
    expected_log = {
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": "1544712660300000000",
        "severityNumber": 10,
        "severityText": "Information",
        "body": "Example log record",
        "eventName": "",
        "traceId": EXAMPLE_TRACE_ID,
        "spanId": "eee19b7ec3c1b174",
        "flags": 0,
        "service": "my.service",
        "host": "",
        "attributes": {
            "string.attribute": "some string",
            "boolean.attribute": True,
            "int.attribute": 10,
            "double.attribute": 637.704,
            "array.attribute": ["many", "values"],
            "map.attribute": {"some.map.key": "some value"},
        },
        "resource": {"service.name": "my.service"},
        "scope": {"name": "my.library", "version": "1.0.0"},
    }
    assert data["logs"] == [expected_log]

    # 2018 is far outside the default window: explicit ranges.
    window = {"start": EXAMPLE_T - 60, "end": EXAMPLE_T + 60}
    assert trace_ids(sonde) == []
    assert trace_ids(sonde, **window) == [EXAMPLE_TRACE_ID]
    assert trace_ids(sonde, start=0) == [EXAMPLE_TRACE_ID]
    assert trace_ids(sonde, service="my.service", name="I'm a server span", attr="my.span.attr=some value",
                     **window) == [EXAMPLE_TRACE_ID]
    (summary,) = sonde.api("/api/v1/traces", window)
    assert summary == {
        "traceId": EXAMPLE_TRACE_ID, "rootService": "my.service", "rootName": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000", "durationNs": 1_000_000_000, "spanCount": 1,
        "errorCount": 0, "services": {"my.service": 1},
    }

    assert logs(sonde, traceId=EXAMPLE_TRACE_ID, **window) == [expected_log]
    all_logs = logs(sonde, start=0)
    assert [l["body"] for l in all_logs if l["eventName"] == ""] == ["Example log record"]
    (event,) = logs(sonde, "/api/v1/events", name="browser.page_view", **window)
    assert event["eventName"] == "browser.page_view"
    assert (event["severityNumber"], event["severityText"]) == (9, "test severity text")
    assert event["timeUnixNano"] == "1544712660300000000"
    assert event["attributes"] == {"event.attribute": "some event attribute"}
    assert (event["traceId"], event["spanId"]) == ("", "")
    assert event["service"] == "my.service"
    # A structured body is JSON text.
    assert json.loads(event["body"]) == {
        "type": 0,
        "url": "https://www.guidgenerator.com/online-guid-generator.aspx",
        "referrer": "https://wwww.google.com",
        "title": "Free Online GUID Generator",
    }
    assert logs(sonde, "/api/v1/events", **window) == [event]
    assert logs(sonde, severity="10", **window) == [expected_log]

    # And through the Jaeger API, with microsecond times.
    r = jaeger_get(sonde, "/api/traces", {
        "service": "my.service", "start": (EXAMPLE_T - 60) * 1_000_000, "end": (EXAMPLE_T + 60) * 1_000_000,
    })
    assert r.status_code == 200, r.text
    (jt,) = r.json()["data"]
    (js,) = jt["spans"]
    assert (jt["traceID"], js["spanID"], js["operationName"], js["startTime"], js["duration"]) == (
        EXAMPLE_TRACE_ID, "eee19b7ec3c1b174", "I'm a server span", 1544712660000000, 1_000_000,
    )
    assert js["references"] == [{"refType": "CHILD_OF", "traceID": EXAMPLE_TRACE_ID, "spanID": "eee19b7ec3c1b173"}]
    assert jt["processes"][js["processID"]]["serviceName"] == "my.service"


# -- 6. bad input ------------------------------------------------------------


def test_bad_input(sonde):
    api_traces = f"{sonde.api_url}/api/v1/otlp/v1/traces"
    api_logs = f"{sonde.api_url}/api/v1/otlp/v1/logs"
    # Malformed payloads: 400 on both ports, both signals; gRPC: INVALID_ARGUMENT.
    for url in [sonde.traces_url, sonde.logs_url, api_traces, api_logs]:
        r = post_otlp(url, b"\xff\xff\xff\xff", "application/x-protobuf")
        assert r.status_code == 400, f"{url} protobuf: {r.status_code} {r.content!r}"
        r = post_otlp(url, b'{"resourceSpans": [', "application/json")
        assert r.status_code == 400, f"{url} JSON: {r.status_code} {r.content!r}"
        r = post_otlp(url, b'{"resourceLogs": "nope", "resourceSpans": 7}', "application/json")
        assert r.status_code == 400, f"{url} JSON of the wrong shape: {r.status_code} {r.content!r}"
        # Wrong content type: 415.
        r = post_otlp(url, b"hello", "text/plain")
        assert r.status_code == 415, f"{url} text/plain: {r.status_code} {r.content!r}"
        # A gzip header on a body that is not gzip.
        r = post_otlp(url, b"not gzip", "application/x-protobuf", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400, f"{url} bad gzip: {r.status_code} {r.content!r}"
    for method in [GRPC_TRACES, GRPC_LOGS]:
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(sonde.otlp_grpc_endpoint, method, b"\xff\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value)

    t = now_us_ns() - 30 * SEC
    good = new_trace_id()
    a, b = new_span_id(), new_span_id()

    # A span with a 3-byte trace id is rejected; the good ones are stored.
    req = traces_request(resource_spans("bad-input", [
        otlp_span(good, a, "good root", t, t + 10 * MS, kind=SERVER, flags=0x301),
        otlp_span(b"\x01\x02\x03", new_span_id(), "short trace id", t, t + MS),
        otlp_span(good, b, "good child", t + MS, t + 5 * MS, parent=a),
    ]))
    r = post_otlp(sonde.traces_url, req)
    assert r.status_code == 200, r.content
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1, answer
    assert answer.partial_success.error_message, answer
    spans = get_trace(sonde, good)["spans"]
    assert [(s["name"], s["parentSpanId"]) for s in spans] == [("good root", ""), ("good child", a)]
    assert spans[0]["flags"] == 0x301
    # Over gRPC, and as JSON: the same partial success.
    good2 = new_trace_id()
    req2 = traces_request(resource_spans("bad-input", [
        otlp_span(good2, new_span_id(), "grpc good", t, t + MS),
        otlp_span(good2, b"\x01\x02\x03", "short span id", t, t + MS),
    ]))
    answer = ExportTraceServiceResponse.FromString(grpc_export(sonde.otlp_grpc_endpoint, GRPC_TRACES, req2))
    assert answer.partial_success.rejected_spans == 1, answer
    assert answer.partial_success.error_message
    assert [s["name"] for s in get_trace(sonde, good2)["spans"]] == ["grpc good"]
    good3 = new_trace_id()
    doc = otlp_json(traces_request(resource_spans("bad-input", [
        otlp_span(good3, new_span_id(), "json good", t, t + MS),
        otlp_span(good3, new_span_id(), "all-zero trace id", t, t + MS),
    ])))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "0" * 32
    r = post_otlp(sonde.traces_url, doc)
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedSpans"] in (1, "1"), r.text
    assert r.json()["partialSuccess"]["errorMessage"], r.text
    assert [s["name"] for s in get_trace(sonde, good3)["spans"]] == ["json good"]

    # Long values are cut, ending with the marker; 200 attributes keep the first 128.
    long_ascii = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    long_utf8 = "é" * 5000  # 10 000 bytes of two-byte characters
    many = {f"attr.{i:03d}": i for i in range(200)}
    trace = new_trace_id()
    req = traces_request(resource_spans("limits", [
        otlp_span(trace, new_span_id(), "long values", t, t + MS, attrs={"long": long_ascii, "long.utf8": long_utf8,
                                                                          "short": "fine"}),
        otlp_span(trace, new_span_id(), "many attributes", t + MS, t + 2 * MS, attrs=many),
    ]))
    otlp_ok(post_otlp(sonde.traces_url, req))
    by = {s["name"]: s for s in get_trace(sonde, trace)["spans"]}
    long_attrs = by["long values"]["attributes"]
    assert long_attrs["short"] == "fine"
    for key, original in [("long", long_ascii), ("long.utf8", long_utf8)]:
        v = long_attrs[key]
        assert v.endswith(TRUNCATION_MARKER), f"{key}: {v[-40:]!r}"
        kept = v[: -len(TRUNCATION_MARKER)]
        assert original.startswith(kept), key
        assert 4000 <= len(v.encode()) <= 4096, f"{key}: {len(v.encode())} bytes"
    assert by["many attributes"]["attributes"] == {f"attr.{i:03d}": i for i in range(128)}

    # The same limits for logs.
    rec = otlp_log(t, "limits", attrs={"long": long_ascii, **many})
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("limits", [rec]))))
    (log,) = logs(sonde, service="limits")
    assert len(log["attributes"]) == 128
    assert log["attributes"]["long"].endswith(TRUNCATION_MARKER)
    assert long_ascii.startswith(log["attributes"]["long"][: -len(TRUNCATION_MARKER)])
    assert log["attributes"]["attr.000"] == 0 and "attr.127" not in log["attributes"]

    # gzip works for JSON and protobuf.
    gz = new_trace_id()
    req = traces_request(resource_spans("gzip", [otlp_span(gz, new_span_id(), "gzipped protobuf", t, t + MS)]))
    otlp_ok(post_otlp(sonde.traces_url, req, gzipped=True))
    req = traces_request(resource_spans("gzip", [otlp_span(gz, new_span_id(), "gzipped json", t + MS, t + 2 * MS)]))
    otlp_ok(post_otlp(sonde.traces_url, otlp_json(req), gzipped=True))
    assert [s["name"] for s in get_trace(sonde, gz)["spans"]] == ["gzipped protobuf", "gzipped json"]
    otlp_ok(post_otlp(sonde.logs_url, otlp_json(logs_request(resource_logs("gzip", [otlp_log(t, "gz log")]))),
                      gzipped=True))
    assert bodies(logs(sonde, service="gzip")) == ["gz log"]

    # Trace lookups: unknown id 404, malformed id 400.
    r = sonde.get(f"/api/v1/traces/{'ab' * 16}")
    assert r.status_code == 404, r.text
    assert (r.json()["status"], r.json()["errorType"]) == ("error", "not_found"), r.text
    for bad in ["xyz", "abc", "ab" * 17, "zz" * 16]:
        r = sonde.get(f"/api/v1/traces/{bad}")
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"
        assert r.json()["status"] == "error"
    # Bad log search parameters.
    for bad in [{"severity": "loud"}, {"traceId": "xyz"}, {"cursor": "garbage"}, {"limit": "many"}]:
        r = sonde.get("/api/v1/logs", bad)
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"


# -- 7. live tail ------------------------------------------------------------


def test_live_tail(sonde):
    t = now_us_ns()
    with SseStream(sonde.api_url, "/api/v1/tail?signal=logs&service=tail-a") as tail_logs, \
            SseStream(sonde.api_url, "/api/v1/tail?signal=spans&service=tail-a") as tail_spans, \
            SseStream(sonde.api_url, "/api/v1/tail?signal=logs&service=tail-a&severity=error") as tail_errors:
        for s in (tail_logs, tail_spans, tail_errors):
            assert s.status == 200, s.headers
            assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
            ev = s.next_event(5)
            assert ev is not None and ev[0] == "subscribed", ev

        sent = time.monotonic()
        otlp_ok(post_otlp(sonde.logs_url, logs_request(
            resource_logs("tail-b", [otlp_log(t, "from b")]),
            resource_logs("tail-a", [otlp_log(t + 1, "from a", severity=9, attrs={"k": "v"})]),
        )))
        trace = new_trace_id()
        otlp_ok(post_otlp(sonde.traces_url, traces_request(
            resource_spans("tail-a", [otlp_span(trace, new_span_id(), "tailed span", t, t + MS, kind=SERVER)]),
            resource_spans("tail-b", [otlp_span(trace, new_span_id(), "other span", t, t + MS)]),
        )))
        ev = tail_logs.next_event(2)
        assert ev is not None, "no log within 2 s"
        assert time.monotonic() - sent < 2.5
        kind, data = ev
        assert kind == "log", ev
        log = json.loads(data)
        assert (log["body"], log["service"], log["severityNumber"], log["timeUnixNano"]) == (
            "from a", "tail-a", 9, str(t + 1),
        )
        assert log["attributes"] == {"k": "v"}

        ev = tail_spans.next_event(2)
        assert ev is not None and ev[0] == "span", ev
        span = json.loads(ev[1])
        assert (span["name"], span["service"], span["traceId"], span["kind"]) == ("tailed span", "tail-a", trace, "server")

        # An error log now: the error subscriber sees only it.
        otlp_ok(post_otlp(sonde.logs_url, logs_request(
            resource_logs("tail-a", [otlp_log(t + 2, "it broke", severity=17)]),
        )))
        ev = tail_errors.next_event(2)
        assert ev is not None and ev[0] == "log" and json.loads(ev[1])["body"] == "it broke", ev
        ev = tail_logs.next_event(2)
        assert ev is not None and json.loads(ev[1])["body"] == "it broke", ev

        # Nothing else: not tail-b's log, not the span on the logs stream.
        assert tail_logs.events_during(0.7) == []
        assert tail_spans.events_during(0.1) == []
        assert tail_errors.events_during(0.1) == []

    # Events go to an events tail as `event: event`.
    with SseStream(sonde.api_url, "/api/v1/tail?signal=events&service=tail-a") as tail_events:
        assert tail_events.next_event(5)[0] == "subscribed"
        doc = json_logs_request("tail-a", [
            json_log(t + 3, "plain", {}),
            json_log(t + 4, "clicked", {"user.id": "u-7"}, "ui.click"),
        ])
        otlp_ok(post_otlp(sonde.logs_url, doc))
        ev = tail_events.next_event(2)
        assert ev is not None and ev[0] == "event", ev
        e = json.loads(ev[1])
        assert (e["body"], e["eventName"], e["attributes"]) == ("clicked", "ui.click", {"user.id": "u-7"})
        assert tail_events.events_during(0.3) == []

    # A bad filter is refused before streaming.
    r = sonde.get("/api/v1/tail", {"signal": "everything"})
    assert r.status_code == 400, r.text


# -- 8. services and hosts ---------------------------------------------------


def test_services_and_hosts(sonde):
    t = now_us_ns() - 10 * SEC
    trace = new_trace_id()
    root = new_span_id()
    otlp_ok(post_otlp(sonde.traces_url, traces_request(resource_spans("svc-a", [
        otlp_span(trace, root, "GET /a", t, t + 10 * MS, kind=SERVER),
        otlp_span(trace, new_span_id(), "a child", t + MS, t + 2 * MS, parent=root),
        otlp_span(trace, new_span_id(), "another child", t + 3 * MS, t + 4 * MS, parent=root),
    ], host="h1"))))
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("svc-b", [
        otlp_log(t, "b says hi"), otlp_log(t + MS, "b says bye"),
    ], host="h2"))))
    # A metric of svc-a: its `job` label.
    point = NumberDataPoint(time_unix_nano=time.time_ns(), as_double=3.5, attributes=key_values({"room": "x"}))
    metrics = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=_resource("svc-a", None, {"service.instance.id": "a-0"}),
        scope_metrics=[ScopeMetrics(metrics=[Metric(name="svc_a_temperature", gauge=Gauge(data_points=[point]))])],
    )])
    r = post_otlp(sonde.otlp_http_metrics_url, metrics)
    assert r.status_code == 200, r.content
    assert sonde.vector('svc_a_temperature{job="svc-a"}', time.time()) != {}

    services = {s["name"]: s for s in sonde.api("/api/v1/services")}
    assert set(services) == {"svc-a", "svc-b"}, services
    a, b = services["svc-a"], services["svc-b"]
    assert a["signals"] == {
        "metrics": {"series": 1}, "traces": {"spans": 3}, "logs": {"records": 0}, "events": {"records": 0},
    }, a
    assert a["hosts"] == ["h1"], a
    assert b["signals"] == {
        "metrics": {"series": 0}, "traces": {"spans": 0}, "logs": {"records": 2}, "events": {"records": 0},
    }, b
    assert b["hosts"] == ["h2"], b
    for s in (a, b):
        first, last = int(s["firstSeenUnixNano"]), int(s["lastSeenUnixNano"])
        assert 0 < first <= last, s

    hosts = {h["name"]: h for h in sonde.api("/api/v1/hosts")}
    assert set(hosts) == {"h1", "h2"}, hosts
    assert hosts["h1"]["services"] == ["svc-a"]
    assert hosts["h1"]["signals"]["traces"] == {"spans": 3}
    assert hosts["h2"]["services"] == ["svc-b"]
    assert hosts["h2"]["signals"]["logs"] == {"records": 2}


def test_open_tail_does_not_hold_up_shutdown(sonde_factory):
    """A browser left on the live tail must not delay SIGTERM: the stream
    ends and the server exits promptly and cleanly."""
    sonde = sonde_factory()
    try:
        with SseStream(sonde.api_url, "/api/v1/tail?signal=all") as tail:
            assert tail.next_event(5)[0] == "subscribed"
            started = time.monotonic()
            code = sonde.stop(grace=20)
            took = time.monotonic() - started
            assert code == 0, f"exit code {code}"
            assert took < 3, f"SIGTERM took {took:.1f}s with a live tail open:\n{sonde.log_text()}"
            assert tail.next_event(1) is None and tail._ended, "the tail stream did not end"
    finally:
        if not sonde.alive():
            sonde.start()  # the fixture expects a running server to stop
