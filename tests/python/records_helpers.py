"""Shared helpers of the trace, log and event tests (test_traces_logs.py,
test_records_input.py)."""

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
