"""The OTLP project's JSON request examples, posted to /v1/metrics as JSON
and as protobuf; the resulting series and values are read back with PromQL."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import requests
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from harness import ROOT

T = 1544712660.3  # timeUnixNano of every point in metrics.json
JOB = "my.service"


def examples_dir() -> Path:
    shared = os.environ.get("SONDE_SHARED")
    base = Path(shared) if shared else ROOT.parent / "shared"
    return base / "data" / "otlp-examples"


@pytest.fixture(scope="module")
def metrics_json() -> bytes:
    path = examples_dir() / "metrics.json"
    if not path.is_file():
        pytest.fail(f"OTLP examples not found at {path} (set SONDE_SHARED to the shared folder)",
                    pytrace=False)
    return path.read_bytes()


def post(sonde, body: bytes, content_type: str, gzipped: bool) -> requests.Response:
    headers = {"Content-Type": content_type}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return requests.post(sonde.otlp_http_metrics_url, data=body, headers=headers, timeout=30)


BASE = {"job": JOB, "otel_scope_name": "my.library", "otel_scope_version": "1.0.0"}


def series(name: str, **labels: str) -> frozenset:
    return frozenset({**BASE, "__name__": name, **labels}.items())


# Every series the example request must produce, with its value at T.
EXPECTED = {
    # Monotonic cumulative sum, unit "1": `_total`, no unit word.
    series("my_counter_total", my_counter_attr="some value"): 5.0,
    # Gauge with unit "1": `_ratio`.
    series("my_gauge_ratio", my_gauge_attr="some value"): 10.0,
    # Explicit-bucket histogram, bounds [1], counts [1, 1], sum 2.
    series("my_histogram_bucket", my_histogram_attr="some value", le="1"): 1.0,
    series("my_histogram_bucket", my_histogram_attr="some value", le="+Inf"): 2.0,
    series("my_histogram_sum", my_histogram_attr="some value"): 2.0,
    series("my_histogram_count", my_histogram_attr="some value"): 2.0,
    # Exponential histogram, scale 0 (bucket k is (2^k, 2^(k+1)]): zero
    # bucket 1, offset 1 with counts [0, 2], so one value at 0 and two in
    # (4, 8]; as classic cumulative buckets: le=0 -> 1, le=4 -> 1, le=8 -> 3.
    series("my_exponential_histogram_bucket", my_exponential_histogram_attr="some value", le="0"): 1.0,
    series("my_exponential_histogram_bucket", my_exponential_histogram_attr="some value", le="4"): 1.0,
    series("my_exponential_histogram_bucket", my_exponential_histogram_attr="some value", le="8"): 3.0,
    series("my_exponential_histogram_bucket", my_exponential_histogram_attr="some value", le="+Inf"): 3.0,
    series("my_exponential_histogram_sum", my_exponential_histogram_attr="some value"): 10.0,
    series("my_exponential_histogram_count", my_exponential_histogram_attr="some value"): 3.0,
}


@pytest.mark.parametrize(
    "encoding,gzipped",
    [
        pytest.param("json", False, id="json"),
        pytest.param("json", True, id="json-gzip"),
        pytest.param("protobuf", False, id="protobuf"),
        pytest.param("protobuf", True, id="protobuf-gzip"),
    ],
)
def test_metrics_example(sonde_factory, metrics_json, encoding, gzipped):
    sonde = sonde_factory("--retention", "0")
    if encoding == "json":
        r = post(sonde, metrics_json, "application/json", gzipped)
        assert r.status_code == 200, f"{r.status_code}: {r.text}"
        assert r.headers["content-type"].startswith("application/json"), r.headers
        # The answer is an ExportMetricsServiceResponse in the protobuf JSON
        # mapping; full success means nothing rejected.
        answer = json_format.Parse(r.content, ExportMetricsServiceResponse())
        assert answer.partial_success.rejected_data_points == 0, r.text
    else:
        req = json_format.Parse(metrics_json, ExportMetricsServiceRequest())
        assert len(req.resource_metrics[0].scope_metrics[0].metrics) == 4
        r = post(sonde, req.SerializeToString(), "application/x-protobuf", gzipped)
        assert r.status_code == 200, f"{r.status_code}: {r.content!r}"
        answer = ExportMetricsServiceResponse.FromString(r.content)
        assert answer.partial_success.rejected_data_points == 0, answer

    # Every series, with exactly its labels and value, and nothing else.
    got = sonde.vector(f'{{job="{JOB}"}}', T)
    assert got == EXPECTED

    # The series API lists the same series for the time of the points.
    listed = sonde.api("/api/v1/series", {"match[]": f'{{job="{JOB}"}}', "start": T - 60, "end": T + 60})
    assert sorted(sorted(s.items()) for s in listed) == sorted(sorted(k) for k in EXPECTED)

    # No other resource attribute, so no target_info.
    assert sonde.vector("target_info", T) == {}

    # The instant is exact: a query one lookback period later finds nothing.
    assert sonde.vector(f'{{job="{JOB}"}}', T + 301) == {}
    # ... and one before the points finds nothing either.
    assert sonde.vector(f'{{job="{JOB}"}}', T - 1) == {}

    # histogram_quantile over both histograms.
    got = sonde.value('histogram_quantile(0.5, my_histogram_bucket)', T)
    assert got == 1.0, got  # rank 1 of 2 falls at the top of the le=1 bucket
    got = sonde.value('histogram_quantile(0.5, my_exponential_histogram_bucket)', T)
    assert got == 5.0, got  # rank 1.5: half-way through (4, 8] holding 2 of 3

    # Metadata carries the descriptions and kinds.
    meta = sonde.api("/api/v1/metadata")
    for name, kind, help_text in [
        ("my_counter_total", "counter", "I am a Counter"),
        ("my_gauge_ratio", "gauge", "I am a Gauge"),
        ("my_histogram", "histogram", "I am a Histogram"),
        ("my_exponential_histogram", "histogram", "I am an Exponential Histogram"),
    ]:
        assert name in meta, f"no metadata for {name}: {meta}"
        assert (meta[name][0]["type"], meta[name][0]["help"]) == (kind, help_text), meta[name]

