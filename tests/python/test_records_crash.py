"""Spans and logs survive a crash: what Sonde acknowledged is found again
after `kill -9` and a restart on the same data directory, whether it was
still only in the WAL or already written to Parquet segments."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from harness import (
    GRPC_LOGS,
    grpc_export,
    logs_request,
    new_span_id,
    new_trace_id,
    otlp_json,
    otlp_log,
    otlp_ok,
    otlp_span,
    post_otlp,
    resource_logs,
    resource_spans,
    traces_request,
)

MS = 1_000_000
SEC = 1_000_000_000


def send_batch(sonde, tag: str, t: int) -> tuple[str, list[str], list[str]]:
    """One trace of three spans (OTLP/HTTP) and four logs in it (two over
    gRPC, two as JSON on the API port); returns (trace id, span names, bodies)."""
    trace, root = new_trace_id(), new_span_id()
    names = [f"{tag} root", f"{tag} child 1", f"{tag} child 2"]
    spans = [
        otlp_span(trace, root, names[0], t, t + 100 * MS, kind=2, attrs={"batch": tag}),
        otlp_span(trace, new_span_id(), names[1], t + 10 * MS, t + 20 * MS, parent=root),
        otlp_span(trace, new_span_id(), names[2], t + 30 * MS, t + 90 * MS, parent=root, status=2),
    ]
    otlp_ok(post_otlp(sonde.traces_url, traces_request(resource_spans("crashy", spans, host="crash-host"))))
    bodies = [f"{tag} log {i}" for i in range(4)]
    recs = [otlp_log(t + (i + 1) * MS, b, severity=9 + 4 * (i % 2), trace_id=trace, span_id=root,
                     attrs={"batch": tag}) for i, b in enumerate(bodies)]
    answer = ExportLogsServiceResponse.FromString(
        grpc_export(sonde.otlp_grpc_endpoint, GRPC_LOGS, logs_request(resource_logs("crashy", recs[:2])))
    )
    assert not answer.HasField("partial_success"), answer
    otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/logs",
                      otlp_json(logs_request(resource_logs("crashy", recs[2:])))))
    return trace, names, bodies


def check_batch(sonde, trace: str, names: list[str], bodies: list[str], tag: str) -> None:
    data = sonde.api(f"/api/v1/traces/{trace}")
    assert [s["name"] for s in data["spans"]] == names, data
    assert [s["status"]["code"] for s in data["spans"]] == ["unset", "unset", "error"]
    assert [s["durationNs"] for s in data["spans"]] == [100 * MS, 10 * MS, 60 * MS]
    assert data["spans"][0]["attributes"] == {"batch": tag}
    assert data["spans"][0]["host"] == "crash-host"
    assert sorted(l["body"] for l in data["logs"]) == bodies
    page = sonde.api("/api/v1/logs", {"traceId": trace})
    assert [l["body"] for l in page["logs"]] == bodies[::-1]
    assert [l["severityNumber"] for l in page["logs"]] == [13, 9, 13, 9]
    assert [l["body"] for l in sonde.api("/api/v1/logs", {"attr": f"batch={tag}", "severity": "warn"})["logs"]] == [
        bodies[3], bodies[1],
    ]
    found = [x["traceId"] for x in sonde.api("/api/v1/traces", {"attr": f"batch={tag}"})]
    assert found == [trace]
    found = [x["traceId"] for x in sonde.api("/api/v1/traces", {"name": names[2], "status": "error"})]
    assert found == [trace]


def test_acknowledged_records_survive_kill_9(sonde_factory):
    sonde = sonde_factory()
    t = time.time_ns() - 60 * SEC
    batches = [(tag, *send_batch(sonde, tag, t + i * SEC)) for i, tag in enumerate(["first", "second"])]
    sonde.restart(crash=True)
    for tag, trace, names, bodies in batches:
        check_batch(sonde, trace, names, bodies, tag)
    # Still ingesting after the restart, and a second crash loses nothing either.
    batches.append(("third", *send_batch(sonde, "third", t + 5 * SEC)))
    sonde.restart(crash=True)
    for tag, trace, names, bodies in batches:
        check_batch(sonde, trace, names, bodies, tag)
    services = {s["name"]: s for s in sonde.api("/api/v1/services")}
    assert services["crashy"]["signals"]["traces"]["spans"] == 9
    assert services["crashy"]["signals"]["logs"]["records"] == 12


def segments(sonde, kind: str) -> list:
    return sorted((sonde.data_dir / "records" / "segments").glob(f"{kind}-*.parquet"))


def wait_for_segments(sonde, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (segments(sonde, "spans") and segments(sonde, "logs")):
        assert time.monotonic() < deadline, (
            f"no Parquet segments after {timeout}s: {list((sonde.data_dir / 'records').rglob('*'))}"
        )
        time.sleep(0.2)


def test_records_flushed_to_parquet_survive_restarts(sonde_factory):
    sonde = sonde_factory("--records-flush-interval", "1s")
    t = time.time_ns() - 60 * SEC
    trace1, names1, bodies1 = send_batch(sonde, "flushed", t)
    wait_for_segments(sonde)
    time.sleep(0.3)
    # Found from the segments...
    check_batch(sonde, trace1, names1, bodies1, "flushed")
    # ... and a repeated delivery of spans already in a segment appears once.
    again = traces_request(resource_spans("crashy", [
        otlp_span(trace1, sonde.api(f"/api/v1/traces/{trace1}")["spans"][0]["spanId"], names1[0], t, t + 100 * MS,
                  kind=2, attrs={"batch": "flushed"}),
    ], host="crash-host"))
    otlp_ok(post_otlp(sonde.traces_url, again))
    assert len(sonde.api(f"/api/v1/traces/{trace1}")["spans"]) == 3

    # A clean restart: the segments are read again.
    sonde.restart()
    check_batch(sonde, trace1, names1, bodies1, "flushed")
    # New data only in the WAL, then a crash: both found.
    trace2, names2, bodies2 = send_batch(sonde, "wal-only", t + 5 * SEC)
    sonde.restart(crash=True)
    check_batch(sonde, trace1, names1, bodies1, "flushed")
    check_batch(sonde, trace2, names2, bodies2, "wal-only")
    assert [x["traceId"] for x in sonde.api("/api/v1/traces", {"service": "crashy"})] == [trace2, trace1]

    # The segments are plain Parquet that other tools read.
    pq = pytest.importorskip("pyarrow.parquet")
    wait_for_segments(sonde)
    # (The time columns are TIMESTAMP(NANOS), which pyarrow will not turn into
    # Python datetimes without pandas; they are checked through the API.)
    span_cols = ["trace_id", "span_id", "parent_span_id", "name", "service_name", "host_name", "duration_ns"]
    span_rows = [r for p in segments(sonde, "spans") for r in pq.read_table(p, columns=span_cols).to_pylist()]
    by_name = {r["name"]: r for r in span_rows}
    for n in names1:
        assert bytes(by_name[n]["trace_id"]).hex() == trace1, by_name[n]
        assert by_name[n]["service_name"] == "crashy"
        assert by_name[n]["host_name"] == "crash-host"
    assert by_name[names1[0]]["duration_ns"] == 100 * MS
    assert by_name[names1[0]]["parent_span_id"] is None
    assert bytes(by_name[names1[1]]["parent_span_id"]).hex() == bytes(by_name[names1[0]]["span_id"]).hex()
    log_rows = [r for p in segments(sonde, "logs") for r in pq.read_table(p, columns=["body", "trace_id"]).to_pylist()]
    flushed = sorted((r["body"], bytes(r["trace_id"]).hex()) for r in log_rows if r["body"].startswith("flushed"))
    assert flushed == [(b, trace1) for b in bodies1]


def segment_seqs(sonde) -> tuple[set[str], set[str]]:
    """The sequence numbers of the span and of the log segments on disk."""
    names = os.listdir(sonde.data_dir / "records" / "segments")
    seqs = lambda kind: {n[len(kind) + 1 : -len(".parquet")] for n in names  # noqa: E731
                         if n.startswith(kind + "-") and n.endswith(".parquet")}
    return seqs("spans"), seqs("logs")


def test_kill_9_during_ingest_and_flush_loses_nothing_acknowledged(sonde_factory):
    """Writers keep sending spans and logs while segments are written every
    second; the server is killed, preferably in the middle of writing one
    flush's segments. Every acknowledged record is there after the restart,
    once."""
    sonde = sonde_factory("--records-flush-interval", "1s")
    t = time.time_ns() - 60 * SEC
    acked_logs: list[str] = []
    acked_spans: list[str] = []
    stop = threading.Event()

    def writer(url, make, acked):
        http = requests.Session()
        for n in range(1_000_000):
            if stop.is_set():
                return
            names, req = make(n)
            try:
                r = http.post(url, data=req.SerializeToString(),
                              headers={"Content-Type": "application/x-protobuf"}, timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                acked.extend(names)

    def log_batch(n):
        batch = [f"log {n}-{i}" for i in range(20)]
        return batch, logs_request(resource_logs("burst", [otlp_log(t + n * 1000 + i, b) for i, b in enumerate(batch)]))

    traces = [new_trace_id() for _ in range(50)]  # well under the search limit

    def span_batch(n):
        names = [f"span {n}-{i}" for i in range(10)]
        trace = traces[n % len(traces)]
        return names, traces_request(resource_spans("burst", [
            otlp_span(trace, new_span_id(), nm, t + n * 1000, t + n * 1000 + 500) for nm in names
        ]))

    writers = [
        threading.Thread(target=writer, args=(sonde.logs_url, log_batch, acked_logs)),
        threading.Thread(target=writer, args=(sonde.traces_url, span_batch, acked_spans)),
    ]
    for w in writers:
        w.start()
    # Kill when one flush has written its span segment but not yet its log
    # segment (or the other way round); else after a few flushes anyway.
    time.sleep(0.5)
    deadline = time.monotonic() + 6
    state = "after several flushes"
    while time.monotonic() < deadline:
        spans, logs = segment_seqs(sonde)
        if spans ^ logs:
            state = f"between a flush's segments (spans {sorted(spans)}, logs {sorted(logs)})"
            break
        time.sleep(0.001)
    sonde.kill9()
    stop.set()
    for w in writers:
        w.join(timeout=10)
    assert len(acked_logs) >= 200 and len(acked_spans) >= 100, (len(acked_logs), len(acked_spans))
    sonde.start()

    got_logs: list[str] = []
    cursor = None
    for _ in range(1000):
        params = {"service": "burst", "limit": 5000}
        if cursor:
            params["cursor"] = cursor
        page = sonde.api("/api/v1/logs", params)
        got_logs.extend(l["body"] for l in page["logs"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(got_logs) == len(set(got_logs)), f"killed {state}: a log record appears twice after the restart"
    missing = set(acked_logs) - set(got_logs)
    assert not missing, (
        f"killed {state}: {len(missing)} of {len(acked_logs)} acknowledged log records lost, "
        f"e.g. {sorted(missing)[:3]}; segments now {segment_seqs(sonde)}"
    )
    found = sonde.api("/api/v1/traces", {"service": "burst", "limit": 1000})
    assert len(found) <= len(traces)
    got_spans = [s["name"] for summary in found for s in sonde.api(f"/api/v1/traces/{summary['traceId']}")["spans"]]
    assert len(got_spans) == len(set(got_spans)), f"killed {state}: a span appears twice after the restart"
    missing = set(acked_spans) - set(got_spans)
    assert not missing, (
        f"killed {state}: {len(missing)} of {len(acked_spans)} acknowledged spans lost, "
        f"e.g. {sorted(missing)[:3]}; segments now {segment_seqs(sonde)}"
    )
