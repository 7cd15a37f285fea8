"""Prometheus remote write v1 sent the way Prometheus sends it: a
snappy-compressed protobuf WriteRequest (python-snappy, protobuf) with the
protocol's headers, then read back with PromQL."""

from __future__ import annotations

import math
import struct
import time

import pytest
import requests
import snappy
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def _remote_write_messages():
    """prometheus/prompb WriteRequest, declared here (no generated code)."""
    f = descriptor_pb2.FileDescriptorProto(name="sonde_test_prompb.proto", package="sonde_test_prompb", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def message(name, fields):
        m = f.message_type.add(name=name)
        for number, (fname, ftype, label, type_name) in enumerate(fields, start=1):
            if fname is None:
                continue
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = f".sonde_test_prompb.{type_name}"
        return m

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    message("Label", [("name", T.TYPE_STRING, opt, None), ("value", T.TYPE_STRING, opt, None)])
    message("Sample", [("value", T.TYPE_DOUBLE, opt, None), ("timestamp", T.TYPE_INT64, opt, None)])
    # Histogram (native): count_int=1, timestamp=15; enough to send one.
    h = f.message_type.add(name="Histogram")
    h.field.add(name="count_int", number=1, type=T.TYPE_UINT64, label=opt)
    h.field.add(name="timestamp", number=15, type=T.TYPE_INT64, label=opt)
    ts = message("TimeSeries", [("labels", T.TYPE_MESSAGE, rep, "Label"), ("samples", T.TYPE_MESSAGE, rep, "Sample")])
    ts.field.add(name="histograms", number=4, type=T.TYPE_MESSAGE, label=rep, type_name=".sonde_test_prompb.Histogram")
    # MetricMetadata: type=1, metric_family_name=2, help=4, unit=5.
    md = f.message_type.add(name="MetricMetadata")
    md.field.add(name="type", number=1, type=T.TYPE_INT32, label=opt)
    md.field.add(name="metric_family_name", number=2, type=T.TYPE_STRING, label=opt)
    md.field.add(name="help", number=4, type=T.TYPE_STRING, label=opt)
    md.field.add(name="unit", number=5, type=T.TYPE_STRING, label=opt)
    # WriteRequest: timeseries=1, metadata=3.
    wr = f.message_type.add(name="WriteRequest")
    wr.field.add(name="timeseries", number=1, type=T.TYPE_MESSAGE, label=rep, type_name=".sonde_test_prompb.TimeSeries")
    wr.field.add(name="metadata", number=3, type=T.TYPE_MESSAGE, label=rep, type_name=".sonde_test_prompb.MetricMetadata")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sonde_test_prompb.WriteRequest"))


WriteRequest = _remote_write_messages()
COUNTER, GAUGE = 1, 2
# Prometheus's staleness marker: a NaN with this exact bit pattern.
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

PROMETHEUS_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "Prometheus/2.42.0",
}


def write_request(series: list[tuple[dict, list[tuple[int, float]]]], metadata=()) -> bytes:
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    for kind, family, help_text in metadata:
        req.metadata.add(type=kind, metric_family_name=family, help=help_text)
    return snappy.compress(req.SerializeToString())


def post(sonde, body: bytes, headers: dict) -> requests.Response:
    return requests.post(sonde.remote_write_url, data=body, headers=headers, timeout=30)


def sample_batch(now_ms: int):
    t0 = now_ms - 30_000
    series = [
        ({"__name__": "rw_requests_total", "job": "rw", "instance": "a:1", "code": "200"},
         [(t0 + i * 10_000, 10.0 * i + 0.5) for i in range(4)]),
        ({"__name__": "rw_requests_total", "job": "rw", "instance": "a:1", "code": "500"},
         [(t0 + i * 10_000, float(i)) for i in range(4)]),
        ({"__name__": "rw_temperature", "job": "rw", "instance": "a:1"},
         [(t0, -1.5), (t0 + 10_000, 1e300), (t0 + 20_000, 5e-324), (t0 + 30_000, 21.25)]),
    ]
    metadata = [(COUNTER, "rw_requests_total", "Requests."), (GAUGE, "rw_temperature", "Temperature.")]
    return t0, series, metadata


def test_remote_write_as_prometheus_sends_it(sonde):
    """Prometheus sends `Content-Encoding: snappy` with every remote-write
    request (the body is snappy by the protocol); a receiver must accept it."""
    now_ms = int(time.time() * 1000)
    t0, series, metadata = sample_batch(now_ms)
    r = post(sonde, write_request(series, metadata), PROMETHEUS_HEADERS)
    assert r.status_code in (200, 204), f"{r.status_code}: {r.text}"
    t = (t0 + 30_000) / 1000
    got = sonde.vector('rw_requests_total{job="rw"}', t)
    assert {dict(k)["code"]: v for k, v in got.items()} == {"200": 30.5, "500": 3.0}


def test_remote_write_without_content_type_is_read_as_version_1(sonde):
    """Prometheus reads a request without Content-Type as remote write 1.0;
    so does Sonde."""
    now_ms = int(time.time() * 1000)
    body = write_request([({"__name__": "rw_bare", "job": "rw"}, [(now_ms, 7.0)])])
    r = post(sonde, body, {})
    assert "Content-Type" not in r.request.headers
    assert r.status_code in (200, 204), f"{r.status_code}: {r.text}"
    assert sonde.value('rw_bare{job="rw"}', now_ms / 1000) == 7.0


def test_native_histograms_are_refused_with_a_reason_not_dropped_silently(sonde):
    now_ms = int(time.time() * 1000)
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="rw_latency_seconds")
    ts.labels.add(name="job", value="rw")
    ts.histograms.add(count_int=3, timestamp=now_ms)
    floats = req.timeseries.add()
    floats.labels.add(name="__name__", value="rw_with_histograms")
    floats.samples.add(timestamp=now_ms, value=2.0)
    r = post(sonde, snappy.compress(req.SerializeToString()), PROMETHEUS_HEADERS)
    assert r.status_code == 400, f"{r.status_code}: {r.text}"
    assert "native histograms are not stored" in r.text and "1 histogram samples" in r.text, r.text
    # The float samples of the same request are stored, as the error says.
    assert sonde.value("rw_with_histograms", now_ms / 1000) == 2.0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "application/x-protobuf"}, id="content-type-only"),
        pytest.param({"Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"}, id="with-version"),
    ],
)
def test_remote_write_samples_read_back_exactly(sonde, headers):
    now_ms = int(time.time() * 1000)
    t0, series, metadata = sample_batch(now_ms)
    r = post(sonde, write_request(series, metadata), headers)
    assert r.status_code in (200, 204), f"{r.status_code}: {r.text}"

    # Every sample, exact timestamps and values (extremes included).
    for labels, samples in series:
        sel = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        got = sonde.matrix(f"{sel}[1m]", (t0 + 30_000) / 1000)
        assert got == {frozenset(labels.items()): samples}, sel

    # Instant values at the last sample, and a rate over them.
    t = (t0 + 30_000) / 1000
    assert sonde.value('rw_temperature{job="rw"}', t) == 21.25
    assert sonde.value('sum(rw_requests_total{job="rw"})', t) == 33.5
    # The counter grows 1/s. The [30s] window starts exactly at t0: with the
    # sample at t0 (Prometheus 2) it is 30 over 30 s; without it (Prometheus
    # 3) 20 over 20 s extrapolated to the window's start. 1.0 either way.
    got = sonde.value('rate(rw_requests_total{code="200"}[30s])', t)
    assert math.isclose(got, 1.0, rel_tol=1e-9), got

    # Series, labels and metadata.
    listed = sonde.api("/api/v1/series", {"match[]": '{job="rw"}', "start": t0 / 1000 - 1, "end": t})
    assert sorted(tuple(sorted(s.items())) for s in listed) == sorted(tuple(sorted(l.items())) for l, _ in series)
    assert sonde.api("/api/v1/labels", {"start": t0 / 1000 - 1, "end": t}) == ["__name__", "code", "instance", "job"]
    assert sonde.api("/api/v1/label/code/values") == ["200", "500"]
    meta = sonde.api("/api/v1/metadata")
    assert meta["rw_requests_total"] == [{"type": "counter", "help": "Requests.", "unit": ""}]
    assert meta["rw_temperature"] == [{"type": "gauge", "help": "Temperature.", "unit": ""}]


def test_remote_write_stale_marker_ends_a_series(sonde):
    now_ms = int(time.time() * 1000)
    labels = {"__name__": "rw_gone", "job": "rw"}
    body = write_request([(labels, [(now_ms - 20_000, 1.0), (now_ms - 10_000, 2.0), (now_ms - 5_000, STALE_NAN)])])
    r = post(sonde, body, {"Content-Type": "application/x-protobuf"})
    assert r.status_code in (200, 204), f"{r.status_code}: {r.text}"
    # Before the marker the series is there; from the marker on it is not.
    assert sonde.value("rw_gone", (now_ms - 6_000) / 1000) == 2.0
    assert sonde.vector("rw_gone", (now_ms - 5_000) / 1000) == {}
    assert sonde.vector("rw_gone", now_ms / 1000) == {}
    # Range selectors leave the marker out.
    got = sonde.matrix("rw_gone[1m]", now_ms / 1000)
    assert got == {frozenset(labels.items()): [(now_ms - 20_000, 1.0), (now_ms - 10_000, 2.0)]}


def test_remote_write_rejects_garbage_with_400(sonde):
    r = post(sonde, b"definitely not snappy", {"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400, f"{r.status_code}: {r.text}"
    r = post(sonde, snappy.compress(b"\xff\xff\xff"), {"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400, f"{r.status_code}: {r.text}"
