#!/usr/bin/env python3
"""Span ingest while searches run (issue 13): does a trace or log search
hold up span writes? A release `sonde serve` (default settings) takes
OTLP/HTTP protobuf span batches from W writer processes, each POSTing
batches of B realistic spans (10 attributes, one event) back to back, and
the time from sending a batch to its acknowledgement is recorded. Two
phases of D seconds each, in one run on one server:

  quiet:    only the writers;
  searched: the writers plus S processes looping trace searches and log
            searches over everything stored (`/api/v1/traces?limit=20`
            with a filter that matches a tenth of the spans, and
            `/api/v1/logs?contains=...`), back to back.

With `--rate`, each writer sends on a schedule (a steady client) rather
than back to back; with a large `--buffer`, everything written stays in
the live buffer, which is what a search scans under the store's lock in a
design that holds it (the one this replaced).

Reported per phase: acknowledged spans per second, and the acknowledgement
latency's p50, p99 and max; the ratio searched/quiet of the p99. The
server's memory and CPU are shared with the clients (2 cores), so CPU taken
by searching shows in both the throughput and the latency; what a lock
held by a search would add is the stall beyond that, visible in the max
and the p99.

Run from the repository with the test venv (scripts/test makes it):
    ~/.cache/sonde-test/venv/bin/python crates/bench/scripts/ingest-under-search.py \\
        --sonde $CARGO_TARGET_DIR/release/sonde
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv(k: str, v) -> KeyValue:
    if isinstance(v, int):
        return KeyValue(key=k, value=AnyValue(int_value=v))
    return KeyValue(key=k, value=AnyValue(string_value=str(v)))


def span_batch(worker: int, n: int, batch: int) -> bytes:
    now = time.time_ns()
    spans = []
    for i in range(n):
        tid = os.urandom(16)
        start = now - 50_000_000
        spans.append(Span(
            trace_id=tid, span_id=os.urandom(8), name=f"GET /api/items/{i % 20}", kind=2,
            start_time_unix_nano=start, end_time_unix_nano=start + 1_000_000 * (1 + i % 90),
            attributes=[kv("http.request.method", "GET"), kv("http.route", f"/api/items/{i % 20}"),
                        kv("http.response.status_code", 200 if i % 10 else 500),
                        kv("server.address", "shop.example"), kv("user.id", f"u{i % 500}"),
                        kv("tenant", f"t{i % 7}"), kv("net.peer.port", 40000 + i),
                        kv("batch", batch), kv("worker", worker), kv("region", "eu-west-1")],
            events=[Span.Event(time_unix_nano=start + 500_000, name="cache.miss",
                               attributes=[kv("key", f"item:{i}")])],
        ))
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv("service.name", f"svc-{worker % 3}"), kv("host.name", "bench-1")]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="bench"), spans=spans)])])
    return req.SerializeToString()


def logs_batch(n: int) -> bytes:
    now = time.time_ns()
    logs = [LogRecord(time_unix_nano=now - i, severity_number=9,
                      body=AnyValue(string_value=f"request {i} served in {i % 90} ms"),
                      attributes=[kv("tenant", f"t{i % 7}")]) for i in range(n)]
    req = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[kv("service.name", "svc-logs")]),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name="bench"), log_records=logs)])])
    return req.SerializeToString()


def writer(url: str, worker: int, spans: int, rate: float, until: float, out) -> None:
    session = requests.Session()
    lat, acked, b = [], 0, 0
    next_at = time.time()
    while time.time() < until:
        if rate > 0:
            # A steady client: requests on a schedule, so a stall shows as
            # latency, not as fewer requests.
            next_at += 1.0 / rate
            pause = next_at - time.time()
            if pause > 0:
                time.sleep(pause)
        body = span_batch(worker, spans, b)
        b += 1
        t = time.perf_counter()
        r = session.post(url + "/v1/traces", data=body,
                         headers={"content-type": "application/x-protobuf"}, timeout=60)
        lat.append(time.perf_counter() - t)
        if r.status_code == 200:
            acked += spans
    out.put((lat, acked))


def searcher(api: str, until: float, out) -> None:
    session = requests.Session()
    n = 0
    while time.time() < until:
        session.get(api + "/api/v1/traces", params={"attr": "tenant=t3", "start": "0", "limit": "20"}, timeout=60)
        session.get(api + "/api/v1/logs", params={"contains": "in 42 ms", "start": "0", "limit": "100"}, timeout=60)
        n += 2
    out.put(n)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def phase(name: str, otlp: str, api: str, args, searchers: int) -> dict:
    until = time.time() + args.duration
    q = mp.Queue()
    procs = [mp.Process(target=writer, args=(otlp, w, args.batch, args.rate, until, q))
             for w in range(args.writers)]
    procs += [mp.Process(target=searcher, args=(api, until, q)) for _ in range(searchers)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    lat = [x for r in results if isinstance(r, tuple) for x in r[0]]
    acked = sum(r[1] for r in results if isinstance(r, tuple))
    searches = sum(r for r in results if isinstance(r, int))
    return {"phase": name, "spans_per_s": acked / args.duration, "requests": len(lat),
            "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
            "max_ms": max(lat) * 1000, "searches": searches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sonde", required=True, help="a release sonde binary")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500, help="spans per request")
    ap.add_argument("--searchers", type=int, default=4)
    ap.add_argument("--preload", type=int, default=200_000, help="spans stored before measuring")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="requests per second per writer (0: back to back)")
    ap.add_argument("--buffer", default="128MiB",
                    help="records_buffer_size: how much stays in the live buffer, unflushed")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sonde-ingest-search-")
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONDE_")}
    proc = subprocess.Popen([args.sonde, "serve", "--data-dir", f"{tmp}/data",
                             "--api-addr", f"127.0.0.1:{ports[0]}", "--otlp-grpc-addr", f"127.0.0.1:{ports[1]}",
                             "--otlp-http-addr", f"127.0.0.1:{ports[2]}", "--log-level", "warn",
                             "--records-buffer-size", args.buffer],
                            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/sonde.log", "w"), env=env)
    api, otlp = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[2]}"
    try:
        for _ in range(300):
            try:
                if requests.get(api + "/ready", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        # A live buffer worth searching: spans and logs already stored.
        s = requests.Session()
        for b in range(args.preload // args.batch):
            s.post(otlp + "/v1/traces", data=span_batch(9, args.batch, b),
                   headers={"content-type": "application/x-protobuf"}).raise_for_status()
        for _ in range(20):
            s.post(otlp + "/v1/logs", data=logs_batch(1000),
                   headers={"content-type": "application/x-protobuf"}).raise_for_status()
        quiet = phase("quiet", otlp, api, args, 0)
        searched = phase("searched", otlp, api, args, args.searchers)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'phase':<10} {'spans/s':>10} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'searches':>9}")
    for r in (quiet, searched):
        print(f"{r['phase']:<10} {r['spans_per_s']:>10.0f} {r['requests']:>9} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['searches']:>9}")
    print(f"p99 searched/quiet: {searched['p99_ms'] / quiet['p99_ms']:.2f}x; "
          f"throughput searched/quiet: {searched['spans_per_s'] / quiet['spans_per_s']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
