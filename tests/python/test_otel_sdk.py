"""The real OpenTelemetry Python SDK exports metrics to a running Sonde over
OTLP/gRPC and OTLP/HTTP; PromQL must read back exactly what was recorded,
under the names the OpenTelemetry-to-Prometheus compatibility rules give."""

from __future__ import annotations

import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from harness import close
from promcalc import bucket_quantile, extrapolated_rate

SCOPE = "sonde.tests.otel"
SCOPE_VERSION = "1.2.3"
BOUNDS = [10.0, 50.0, 100.0, 500.0]


def recording(exporter_cls):
    """The exporter class, recording the result of every export."""

    class Recording(exporter_cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.results: list[MetricExportResult] = []

        def export(self, metrics_data, timeout_millis: float = 10_000, **kw):
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kw)
            self.results.append(result)
            return result

    return Recording


class Sdk:
    """A MeterProvider exporting to Sonde; `flush()` exports now and checks
    that Sonde acknowledged it."""

    def __init__(self, sonde, transport: str, gzip: bool, service: str, instance: str, delta: bool = False):
        temporality = {}
        if delta:
            temporality = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
        if transport == "grpc":
            self.exporter = recording(GrpcExporter)(
                endpoint=sonde.otlp_grpc_endpoint,
                insecure=True,
                timeout=10,
                compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
                preferred_temporality=temporality,
            )
        else:
            self.exporter = recording(HttpExporter)(
                endpoint=sonde.otlp_http_metrics_url,
                timeout=10,
                compression=HttpCompression.Gzip if gzip else HttpCompression.NoCompression,
                preferred_temporality=temporality,
            )
        # A long interval: exports happen when the test calls flush().
        self.reader = PeriodicExportingMetricReader(self.exporter, export_interval_millis=3_600_000)
        resource = Resource.create(
            {
                "service.name": service,
                "service.instance.id": instance,
                "deployment.environment": "sonde-test",
                "host.name": "test-host",
            }
        )
        self.provider = MeterProvider(
            resource=resource,
            metric_readers=[self.reader],
            views=[View(instrument_type=Histogram, aggregation=ExplicitBucketHistogramAggregation(BOUNDS))],
            shutdown_on_exit=False,
        )
        self.meter = self.provider.get_meter(SCOPE, SCOPE_VERSION)

    def flush(self) -> None:
        before = len(self.exporter.results)
        assert self.provider.force_flush(timeout_millis=20_000), "force_flush timed out"
        results = self.exporter.results[before:]
        assert results, "the SDK exported nothing"
        assert all(r == MetricExportResult.SUCCESS for r in results), f"export failed: {results}"

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=10_000)


def cumulative_buckets(values: list[float]) -> list[tuple[float, float]]:
    out = [(b, float(sum(1 for v in values if v <= b))) for b in BOUNDS]
    return out + [(float("inf"), float(len(values)))]


def le_text(b: float) -> str:
    return "+Inf" if b == float("inf") else f"{b:g}"


def assert_close(got: float, want: float, what: str) -> None:
    assert close(got, want, rel=1e-9), f"{what}: got {got!r}, want {want!r}"


VARIANTS = [
    pytest.param("grpc", False, id="grpc"),
    pytest.param("http", False, id="http-protobuf"),
    pytest.param("grpc", True, id="grpc-gzip"),
    pytest.param("http", True, id="http-protobuf-gzip"),
]


@pytest.mark.parametrize("transport,gzip", VARIANTS)
def test_sdk_cumulative_metrics_read_back_exactly(sonde, transport, gzip):
    service = f"checkout-{transport}{'-gz' if gzip else ''}"
    instance = f"{service}-0"
    sdk = Sdk(sonde, transport, gzip, service, instance)
    try:
        m = sdk.meter
        requests_counter = m.create_counter("app.requests", unit="{request}", description="Requests served")
        queue = m.create_up_down_counter("app.queue.size", unit="{item}", description="Items waiting")
        latency = m.create_histogram("app.latency", unit="ms", description="Request latency")

        def temperature(options: CallbackOptions):
            return [Observation(21.5, {"room": "a"}), Observation(-3.25, {"room": "b"})]

        m.create_observable_gauge("app.temperature", callbacks=[temperature], unit="Cel", description="Temperature")

        get = {"http.method": "GET", "http.route": "/a", "http.status_code": 200}
        post = {"http.method": "POST", "http.route": "/b", "http.status_code": 503}
        requests_counter.add(3, get)
        requests_counter.add(2, get)
        requests_counter.add(7, post)
        queue.add(10)
        queue.add(-4)
        samples = [5, 7, 20, 60, 70, 80, 300, 1000]
        for v in samples:
            latency.record(v, {"http.route": "/a"})
        sdk.flush()
        now = time.time()

        base = {
            "job": service,
            "instance": instance,
            "otel_scope_name": SCOPE,
            "otel_scope_version": SCOPE_VERSION,
        }

        # Counter: the `_total` name, every attribute a label (dots to `_`,
        # the int attribute as its decimal text), the exact running total.
        got = sonde.vector(f'app_requests_total{{job="{service}"}}', now)
        want = {
            frozenset({**base, "__name__": "app_requests_total", "http_method": "GET", "http_route": "/a", "http_status_code": "200"}.items()): 5.0,
            frozenset({**base, "__name__": "app_requests_total", "http_method": "POST", "http_route": "/b", "http_status_code": "503"}.items()): 7.0,
        }
        assert got == want
        assert sonde.value(f'sum(app_requests_total{{job="{service}"}})', now) == 12.0

        # Up-down counter: a gauge without `_total`; the annotation unit adds nothing.
        got = sonde.vector(f'app_queue_size{{job="{service}"}}', now)
        assert got == {frozenset({**base, "__name__": "app_queue_size"}.items()): 6.0}

        # Observable gauge: unit `Cel` becomes `_celsius`.
        got = sonde.vector(f'app_temperature_celsius{{job="{service}"}}', now)
        assert got == {
            frozenset({**base, "__name__": "app_temperature_celsius", "room": "a"}.items()): 21.5,
            frozenset({**base, "__name__": "app_temperature_celsius", "room": "b"}.items()): -3.25,
        }

        # Histogram: `_milliseconds` from unit ms; exact buckets, sum, count.
        hist = "app_latency_milliseconds"
        labels = {**base, "http_route": "/a"}
        assert sonde.vector(f'{hist}_count{{job="{service}"}}', now) == {
            frozenset({**labels, "__name__": f"{hist}_count"}.items()): float(len(samples))
        }
        assert sonde.vector(f'{hist}_sum{{job="{service}"}}', now) == {
            frozenset({**labels, "__name__": f"{hist}_sum"}.items()): float(sum(samples))
        }
        got = sonde.vector(f'{hist}_bucket{{job="{service}"}}', now)
        want = {
            frozenset({**labels, "__name__": f"{hist}_bucket", "le": le_text(b)}.items()): c
            for b, c in cumulative_buckets(samples)
        }
        assert got == want

        # histogram_quantile interpolates inside the right bucket.
        buckets = cumulative_buckets(samples)
        for q, lo, hi in [(0.5, 50, 100), (0.25, 10, 50), (0.9, 500, 500)]:
            expected = bucket_quantile(q, buckets)
            got = sonde.value(f'histogram_quantile({q}, {hist}_bucket{{job="{service}"}})', now)
            assert lo <= got <= hi, f"histogram_quantile({q}) = {got}, not in bucket ({lo}, {hi}]"
            assert_close(got, expected, f"histogram_quantile({q})")

        # The other resource attributes are on target_info, not on every series.
        got = sonde.vector(f'target_info{{job="{service}"}}', now)
        assert len(got) == 1, got
        (info_labels, info_value), = got.items()
        info = dict(info_labels)
        assert info_value == 1.0
        assert info["instance"] == instance
        assert info["deployment_environment"] == "sonde-test"
        assert info["host_name"] == "test-host"
        assert info["telemetry_sdk_language"] == "python"
        assert info["telemetry_sdk_name"] == "opentelemetry"
        for absent in ("service_name", "service_instance_id", "otel_scope_name"):
            assert absent not in info, f"target_info has {absent}: {info}"
        # ... and a join on job/instance brings them to a metric.
        got = sonde.vector(
            f'app_queue_size{{job="{service}"}} * on(job, instance) group_left(deployment_environment) target_info',
            now,
        )
        assert list(got.values()) == [6.0]
        assert dict(next(iter(got)))["deployment_environment"] == "sonde-test"

        # Metadata comes from the instrument kinds and descriptions.
        meta = sonde.api("/api/v1/metadata")
        for name, kind, help_text in [
            ("app_requests_total", "counter", "Requests served"),
            ("app_queue_size", "gauge", "Items waiting"),
            ("app_temperature_celsius", "gauge", "Temperature"),
            ("app_latency_milliseconds", "histogram", "Request latency"),
        ]:
            assert name in meta, f"no metadata for {name}: {sorted(meta)}"
            assert meta[name][0]["type"] == kind, meta[name]
            assert meta[name][0]["help"] == help_text, meta[name]
    finally:
        sdk.shutdown()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_delta_temporality_accumulates_into_counters(sonde, transport):
    service = f"delta-{transport}"
    sdk = Sdk(sonde, transport, False, service, f"{service}-0", delta=True)
    try:
        m = sdk.meter
        counter = m.create_counter("jobs.processed", unit="1")
        latency = m.create_histogram("job.duration", unit="s")
        counter.add(5, {"queue": "q1"})
        round1 = [5.0, 60.0]
        for v in round1:
            latency.record(v)
        sdk.flush()
        time.sleep(0.3)
        counter.add(4, {"queue": "q1"})
        round2 = [7.0, 300.0]
        for v in round2:
            latency.record(v)
        sdk.flush()
        time.sleep(0.3)
        counter.add(11, {"queue": "q1"})
        sdk.flush()
        now = time.time()
        eval_ms = round(now * 1000)

        # Each delta is added to the running total: 5, 9, 20.
        raw = sonde.matrix(f'jobs_processed_total{{job="{service}"}}[5m]', now)
        assert len(raw) == 1, raw
        (labels, points), = raw.items()
        assert dict(labels)["queue"] == "q1"
        assert [v for _, v in points] == [5.0, 9.0, 20.0], points

        # increase()/rate() then read the counter as Prometheus would.
        want = extrapolated_rate(points, eval_ms, 300_000)
        got = sonde.value(f'increase(jobs_processed_total{{job="{service}"}}[5m])', now)
        assert_close(got, want, "increase over delta-sourced counter")
        want = extrapolated_rate(points, eval_ms, 300_000, is_rate=True)
        got = sonde.value(f'rate(jobs_processed_total{{job="{service}"}}[5m])', now)
        assert_close(got, want, "rate over delta-sourced counter")

        # The histogram's buckets, sum and count accumulate the same way.
        hist = "job_duration_seconds"
        raw = sonde.matrix(f'{hist}_count{{job="{service}"}}[5m]', now)
        assert [[v for _, v in pts] for pts in raw.values()] == [[2.0, 4.0]], raw
        raw = sonde.matrix(f'{hist}_sum{{job="{service}"}}[5m]', now)
        assert [[v for _, v in pts] for pts in raw.values()] == [[65.0, 372.0]], raw
        everything = round1 + round2
        got = sonde.vector(f'{hist}_bucket{{job="{service}"}}', now)
        by_le = {dict(k)["le"]: v for k, v in got.items()}
        assert by_le == {le_text(b): c for b, c in cumulative_buckets(everything)}
        got = sonde.value(f'histogram_quantile(0.6, {hist}_bucket{{job="{service}"}})', now)
        assert_close(got, bucket_quantile(0.6, cumulative_buckets(everything)), "histogram_quantile(0.6)")
    finally:
        sdk.shutdown()
