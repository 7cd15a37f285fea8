#!/usr/bin/env python3
"""Freshness, end to end (issue 7): how long from the moment a metric or a
span is emitted until it is queryable, and from an injected incident until
the alert's notification reaches a webhook; Sonde side by side with a
Prometheus 2.42 (Debian) with its default settings, in the same run.

Sonde (a release `sonde serve`, default settings except the rule file and
the webhook):

- metric emit -> queryable, N times each: a new value of a gauge sent
  (a) as one OTLP/HTTP protobuf request, (b) as one Prometheus remote-write
  request, (c) through the OpenTelemetry Python SDK (`Gauge.set`, then
  `MeterProvider.force_flush()`, which exports at once through the SDK's
  OTLP/HTTP exporter). Emit = just before the POST (a, b) or the `set`
  call (c); queryable = when an `/api/v1/query` answer carrying the new
  value has arrived (queries are sent back to back, from the moment the
  write is acknowledged).
- span emit -> queryable: a span (a) POSTed as OTLP/HTTP protobuf, (b) ended
  through the OpenTelemetry SDK with a SimpleSpanProcessor (exported inside
  `span.end()`); queryable = `GET /api/v1/traces/{id}` answers 200.
- incident -> webhook: a rule `bench_incident > 0` (`for: 0s`) and
  `alert_webhooks` pointing at an HTTP server in this script; the gauge is
  set to 1 over OTLP/HTTP (T = when Sonde acknowledges the sample, so the
  rule's condition holds from T on), the firing notification's arrival - T
  is recorded, then the gauge goes back to 0 and the resolved notification
  is awaited (arrival - acknowledgement, too). A random pause of up to 1.2
  evaluation intervals before each change spreads them over the evaluation
  phase (otherwise each would come just after an evaluation). With the default `rule_evaluation_interval` (1s) and
  again with `--rule-evaluation-interval 250ms`.

Prometheus (default global settings: scrape_interval and
evaluation_interval 1m; remote-write receiver enabled):

- metric emit -> queryable through remote write, as (b) above.
- incident -> alert firing: Prometheus posts alerts to Alertmanager only,
  so the figure is the time until its `/api/v1/alerts` lists the alert as
  firing (polled every 50 ms), which is before any Alertmanager could send
  a notification (Alertmanager then waits `group_wait`, 30 s by default).
  Incidents are independent series (label `incident`), started at random
  times over a window, so they cover the evaluation phase and run
  concurrently: (a) the gauge pushed by remote write (T = acknowledgement),
  (b) the gauge served by an exporter in this script and scraped at the
  default 1m interval (T = when the exporter starts serving 1), which is
  Prometheus's ordinary pipeline; for (b) the time until the value is
  queryable is recorded too.

Run from the repository with the test venv (scripts/test makes it):
    ~/.cache/sonde-test/venv/bin/python crates/bench/scripts/freshness.py \
        --sonde ~/.cache/sonde-bench-target/release/sonde
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import requests  # noqa: E402

from brokers import otlp_gauge  # noqa: E402
from harness import Prometheus, ScrapeTarget, Sonde, new_span_id, new_trace_id, otlp_span, resource_spans, traces_request  # noqa: E402
from test_remote_write import PROMETHEUS_HEADERS, write_request  # noqa: E402

POLL_TIMEOUT = 15.0  # seconds a single Sonde measurement may take before it counts as missed

SONDE_RULES = """
groups:
  - name: bench
    rules:
      - alert: BenchIncident
        expr: bench_incident > 0
        for: 0s
        labels: {severity: page}
"""

PROMETHEUS_RULES = """
groups:
  - name: bench
    rules:
      - alert: BenchIncident
        expr: bench_incident > 0
        for: 0s
      - alert: BenchScrapedIncident
        expr: bench_scraped_incident > 0
        for: 0s
"""


def now() -> float:
    return time.monotonic()


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..1); NaN for no data."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(p * len(s)) - 1))]


def summary(xs: list[float], expected: int) -> dict:
    return {"n": len(xs), "missed": expected - len(xs), "p50_ms": pct(xs, 0.5) * 1e3, "p99_ms": pct(xs, 0.99) * 1e3,
            "min_ms": min(xs) * 1e3 if xs else float("nan"), "max_ms": max(xs) * 1e3 if xs else float("nan"),
            "mean_ms": sum(xs) / len(xs) * 1e3 if xs else float("nan")} | (
        {"values_ms": [round(x * 1e3, 1) for x in xs]} if len(xs) <= 50 else {})


def check(r: requests.Response, what: str) -> None:
    if r.status_code not in (200, 204):
        raise RuntimeError(f"{what}: {r.status_code} {r.text[:500]}")


def wait_value(http: requests.Session, base: str, expr: str, want: float, deadline: float) -> float | None:
    """Queries back to back until `expr` gives `want`; the time the answer arrived."""
    while now() < deadline:
        r = http.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
        t = now()
        if r.status_code == 200:
            for series in r.json()["data"]["result"]:
                if float(series["value"][1]) == want:
                    return t
    return None


def remote_write_body(name: str, labels: dict, value: float) -> bytes:
    return write_request([({"__name__": name, **labels}, [(int(time.time() * 1000), value)])])


# -- metric emit -> queryable ------------------------------------------------


def metric_probe(http, query_base: str, send, expr: str, n: int) -> tuple[list[float], list[float]]:
    """`send(value)` n times (values 1..n); (emit->ack, emit->queryable) seconds."""
    acks, lats = [], []
    for i in range(1, n + 1):
        t0 = now()
        send(i)
        acks.append(now() - t0)
        t = wait_value(http, query_base, expr, float(i), t0 + POLL_TIMEOUT)
        if t is not None:
            lats.append(t - t0)
        time.sleep(0.005)
    return acks, lats


def sonde_metrics(s: Sonde, n: int) -> dict:
    http = requests.Session()
    out = {}

    def otlp(v):
        r = http.post(s.otlp_http_metrics_url, data=otlp_gauge("bench.fresh.otlp", v, service="bench"),
                      headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        check(r, "OTLP metrics")

    acks, lats = metric_probe(http, s.api_url, otlp, "bench_fresh_otlp", n)
    out["metric_otlp"] = summary(lats, n) | {"ack": summary(acks, n)}

    def rw(v):
        r = http.post(s.remote_write_url, data=remote_write_body("bench_fresh_rw", {"job": "bench"}, v),
                      headers=PROMETHEUS_HEADERS, timeout=10)
        check(r, "remote write")

    acks, lats = metric_probe(http, s.api_url, rw, "bench_fresh_rw", n)
    out["metric_remote_write"] = summary(lats, n) | {"ack": summary(acks, n)}

    # The real OpenTelemetry SDK: set, then force_flush exports at once.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=s.otlp_http_metrics_url),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "bench-sdk"}), metric_readers=[reader])
    gauge = provider.get_meter("bench").create_gauge("bench.fresh.sdk")

    def sdk(v):
        gauge.set(v)
        if not provider.force_flush(10_000):
            raise RuntimeError("SDK metrics force_flush failed")

    acks, lats = metric_probe(http, s.api_url, sdk, "bench_fresh_sdk", n)
    provider.shutdown()
    out["metric_sdk"] = summary(lats, n) | {"ack": summary(acks, n)}
    return out


# -- span emit -> queryable ----------------------------------------------------


def wait_trace(http, base: str, trace_id: str, deadline: float) -> float | None:
    while now() < deadline:
        r = http.get(f"{base}/api/v1/traces/{trace_id}", timeout=10)
        t = now()
        if r.status_code == 200:
            return t
    return None


def sonde_spans(s: Sonde, n: int) -> dict:
    http = requests.Session()
    out = {}
    acks, lats = [], []
    for _ in range(n):
        tid, sid = new_trace_id(), new_span_id()
        end = time.time_ns()
        body = traces_request(resource_spans("bench", [otlp_span(tid, sid, "GET /bench", end - 5_000_000, end)]))
        t0 = now()
        r = http.post(s.traces_url, data=body.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        check(r, "OTLP traces")
        acks.append(now() - t0)
        t = wait_trace(http, s.api_url, tid, t0 + POLL_TIMEOUT)
        if t is not None:
            lats.append(t - t0)
        time.sleep(0.005)
    out["span_otlp"] = summary(lats, n) | {"ack": summary(acks, n)}

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench-sdk"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=s.traces_url)))
    tracer = provider.get_tracer("bench")
    acks, lats = [], []
    for _ in range(n):
        span = tracer.start_span("GET /bench-sdk")
        tid = format(span.get_span_context().trace_id, "032x")
        t0 = now()
        span.end()  # SimpleSpanProcessor: exported before end() returns
        acks.append(now() - t0)
        t = wait_trace(http, s.api_url, tid, t0 + POLL_TIMEOUT)
        if t is not None:
            lats.append(t - t0)
        time.sleep(0.005)
    provider.shutdown()
    out["span_sdk"] = summary(lats, n) | {"ack": summary(acks, n)}
    return out


# -- incident -> webhook (Sonde) -------------------------------------------------


class Webhook:
    """Records (arrival time, payload) of every POST."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict]] = []
        self.cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                t = now()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with hook.cond:
                    hook.got.append((t, json.loads(body)))
                    hook.cond.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, status: str, after: float, timeout: float) -> float | None:
        """Arrival time of the first `status` notification of BenchIncident received after `after`."""
        deadline = now() + timeout
        with self.cond:
            while True:
                for t, body in self.got:
                    if t >= after and any(a["status"] == status and a["labels"].get("alertname") == "BenchIncident"
                                          for a in body.get("alerts", [])):
                        return t
                left = deadline - now()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sonde_incidents(binary: str, n: int, interval: str | None, rng: random.Random) -> dict:
    hook = Webhook()
    rules = Path(tempfile.mkdtemp(prefix="sonde-bench-rules-")) / "rules.yml"
    rules.write_text(SONDE_RULES)
    args = ["--rule-files", str(rules), "--alert-webhooks", hook.url]
    if interval:
        args += ["--rule-evaluation-interval", interval]
    os.environ["SONDE_BIN"] = binary
    s = Sonde(args).start()
    try:
        every = parse_seconds(interval or "1s")
        http = requests.Session()

        def set_incident(v: float) -> float:
            r = http.post(s.otlp_http_metrics_url, data=otlp_gauge("bench.incident", v, service="bench"),
                          headers={"Content-Type": "application/x-protobuf"}, timeout=10)
            check(r, "OTLP metrics")
            return now()

        set_incident(0)
        time.sleep(2 * every + 0.5)
        fire, resolve = [], []
        for _ in range(n):
            time.sleep(rng.uniform(0, 1.2 * every))
            t = set_incident(1)
            got = hook.wait("firing", t, 30)
            if got is not None:
                fire.append(got - t)
            time.sleep(rng.uniform(0, 1.2 * every))
            t = set_incident(0)
            got = hook.wait("resolved", t, 30)
            if got is not None:
                resolve.append(got - t)
        return {"rule_evaluation_interval": interval or "1s (default)",
                "incident_webhook_firing": summary(fire, n), "incident_webhook_resolved": summary(resolve, n)}
    finally:
        s.cleanup()
        hook.close()
        shutil.rmtree(rules.parent, ignore_errors=True)


def parse_seconds(d: str) -> float:
    if d.endswith("ms"):
        return float(d[:-2]) / 1000
    if d.endswith("s"):
        return float(d[:-1])
    if d.endswith("m"):
        return float(d[:-1]) * 60
    return float(d)


# -- Prometheus ------------------------------------------------------------------


class Exporter(ScrapeTarget):
    """A /metrics target: bench_scraped_incident{incident=k} for each k."""

    def __init__(self, n: int) -> None:
        self.values = {k: 0 for k in range(n)}
        self.scrapes: list[float] = []
        super().__init__(self.render)

    def render(self) -> str:
        self.scrapes.append(now())
        lines = ["# TYPE bench_scraped_incident gauge"]
        lines += [f'bench_scraped_incident{{incident="{k}"}} {v}' for k, v in sorted(self.values.items())]
        return "\n".join(lines) + "\n"


def prometheus_run(n_metric: int, n_incidents: int, window: float, rng: random.Random) -> dict:
    exporter = Exporter(n_incidents)
    tmp = Path(tempfile.mkdtemp(prefix="sonde-bench-prom-rules-"))
    (tmp / "rules.yml").write_text(PROMETHEUS_RULES)
    # No global block: scrape_interval and evaluation_interval keep their
    # defaults (1m), as in a Prometheus installed and left as it is.
    config = f"""
rule_files: ["{tmp / 'rules.yml'}"]
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ["{exporter.address}"]
"""
    p = Prometheus(config, flags=["--web.enable-remote-write-receiver"]).start()
    out = {}
    try:
        http = requests.Session()
        rw_url = f"{p.url}/api/v1/write"

        def rw(v):
            r = http.post(rw_url, data=remote_write_body("bench_fresh_rw", {"job": "bench"}, v),
                          headers=PROMETHEUS_HEADERS, timeout=10)
            check(r, "remote write to Prometheus")

        acks, lats = metric_probe(http, p.url, rw, "bench_fresh_rw", n_metric)
        out["metric_remote_write"] = summary(lats, n_metric) | {"ack": summary(acks, n_metric)}

        # Incidents, concurrent and independent, at random times over `window`.
        values = {k: 0.0 for k in range(n_incidents)}
        lock = threading.Lock()

        def push_all():
            with lock:
                series = [({"__name__": "bench_incident", "incident": str(k)}, [(int(time.time() * 1000), v)])
                          for k, v in values.items()]
            check(http_push.post(rw_url, data=write_request(series), headers=PROMETHEUS_HEADERS, timeout=10),
                  "remote write to Prometheus")

        http_push = requests.Session()
        push_all()
        stop = threading.Event()
        t_rw: dict[int, float] = {}
        t_scrape: dict[int, float] = {}
        fired_rw: dict[int, float] = {}
        fired_scrape: dict[int, float] = {}
        seen_scrape: dict[int, float] = {}

        def repush():  # a client that sends its gauges every 10 s, like any exporter would
            while not stop.wait(10):
                push_all()

        def poll():
            ph = requests.Session()
            while not stop.is_set():
                r = ph.get(f"{p.url}/api/v1/alerts", timeout=10)
                t = now()
                for a in r.json()["data"]["alerts"]:
                    if a["state"] != "firing":
                        continue
                    k = int(a["labels"]["incident"])
                    target = fired_rw if a["labels"]["alertname"] == "BenchIncident" else fired_scrape
                    target.setdefault(k, t)
                r = ph.get(f"{p.url}/api/v1/query", params={"query": "bench_scraped_incident == 1"}, timeout=10)
                t = now()
                for series in r.json()["data"]["result"]:
                    seen_scrape.setdefault(int(series["metric"]["incident"]), t)
                time.sleep(0.05)

        threads = [threading.Thread(target=repush, daemon=True), threading.Thread(target=poll, daemon=True)]
        for t in threads:
            t.start()
        start = now()
        offsets = sorted(rng.uniform(0, window) for _ in range(n_incidents))
        for k, off in enumerate(offsets):
            time.sleep(max(0.0, start + off - now()))
            exporter.values[k] = 1
            t_scrape[k] = now()
            with lock:
                values[k] = 1.0
            push_all()
            t_rw[k] = now()
        # At most one scrape interval plus one evaluation interval, and some.
        deadline = now() + 135
        while now() < deadline and (len(fired_rw) < n_incidents or len(fired_scrape) < n_incidents):
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        out["incident_alert_firing_remote_write"] = summary([fired_rw[k] - t_rw[k] for k in fired_rw], n_incidents)
        out["incident_alert_firing_scraped"] = summary(
            [fired_scrape[k] - t_scrape[k] for k in fired_scrape], n_incidents)
        out["metric_scraped_queryable"] = summary([seen_scrape[k] - t_scrape[k] for k in seen_scrape], n_incidents)
        out["incident_window_s"] = window
        out["scrapes_s"] = [round(t - start, 3) for t in exporter.scrapes]
        out["incident_offsets_s"] = [round(o, 3) for o in offsets]
        return out
    finally:
        p.cleanup()
        exporter.close()
        shutil.rmtree(tmp, ignore_errors=True)


# -- report ------------------------------------------------------------------------


def fmt_ms(v: float) -> str:
    if math.isnan(v):
        return "–"
    if v >= 10_000:
        return f"{v / 1000:.1f} s"
    if v >= 100:
        return f"{v:,.0f} ms"
    return f"{v:.1f} ms"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    r = a / b
    return f"{r:.4f}" if r < 0.01 else f"{r:.3f}" if r < 1 else f"{r:.2f}"


def markdown(res: dict) -> str:
    s, p = res["sonde"], res.get("prometheus")
    s250 = res.get("sonde_eval_250ms")
    rows = []

    def row(what, sv, pv, target=None, target_ms=None, peer_what=""):
        met = ""
        if target_ms is not None:
            met = ("yes" if sv["p99_ms"] < target_ms and sv["missed"] == 0 else "**no**")
        rows.append("| " + " | ".join([
            what,
            fmt_ms(sv["p50_ms"]), fmt_ms(sv["p99_ms"]), f'{sv["n"]}' + (f' ({sv["missed"]} missed)' if sv["missed"] else ""),
            peer_what,
            fmt_ms(pv["p50_ms"]) if pv else "", fmt_ms(pv["p99_ms"]) if pv else "",
            (f'{pv["n"]}' + (f' ({pv["missed"]} missed)' if pv["missed"] else "")) if pv else "",
            ratio(sv["p50_ms"], pv["p50_ms"]) if pv else "", ratio(sv["p99_ms"], pv["p99_ms"]) if pv else "",
            target or "", met]) + " |")

    pm = p or {}
    row("metric, OTLP/HTTP POST → queryable", s["metric_otlp"], pm.get("metric_scraped_queryable"),
        "p99 < 1 s", 1000, "scraped (1m default) → queryable")
    row("metric, remote write → queryable", s["metric_remote_write"], pm.get("metric_remote_write"),
        "p99 < 1 s", 1000, "remote write → queryable")
    row("metric, OpenTelemetry SDK `set` + `force_flush` → queryable", s["metric_sdk"], None, "p99 < 1 s", 1000)
    row("span, OTLP/HTTP POST → `GET /api/v1/traces/{id}`", s["span_otlp"], None, "p99 < 1 s", 1000)
    row("span, OpenTelemetry SDK `span.end()` → `GET /api/v1/traces/{id}`", s["span_sdk"], None, "p99 < 1 s", 1000)
    row("incident → firing webhook, eval 1s (default)", s["incident_webhook_firing"],
        pm.get("incident_alert_firing_remote_write"), "p99 < 2 s", 2000,
        "remote write → `/api/v1/alerts` firing")
    row("incident → firing webhook, eval 1s (default)", s["incident_webhook_firing"],
        pm.get("incident_alert_firing_scraped"), "p99 < 2 s", 2000, "scraped → `/api/v1/alerts` firing")
    row("incident over → resolved webhook, eval 1s", s["incident_webhook_resolved"], None)
    if s250:
        row("incident → firing webhook, eval 250ms", s250["incident_webhook_firing"],
            pm.get("incident_alert_firing_remote_write"), "p99 < 2 s", 2000,
            "remote write → `/api/v1/alerts` firing")
        row("incident over → resolved webhook, eval 250ms", s250["incident_webhook_resolved"], None)
    head = ("| measurement | Sonde p50 | Sonde p99 | n | Prometheus (defaults) | p50 | p99 | n | "
            "ratio p50 | ratio p99 | target | met |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|")
    acks = (f'Acknowledgement (POST answered) p50/p99: OTLP metric {fmt_ms(s["metric_otlp"]["ack"]["p50_ms"])} / '
            f'{fmt_ms(s["metric_otlp"]["ack"]["p99_ms"])}, remote write {fmt_ms(s["metric_remote_write"]["ack"]["p50_ms"])} / '
            f'{fmt_ms(s["metric_remote_write"]["ack"]["p99_ms"])}, SDK metric flush {fmt_ms(s["metric_sdk"]["ack"]["p50_ms"])} / '
            f'{fmt_ms(s["metric_sdk"]["ack"]["p99_ms"])}, OTLP span {fmt_ms(s["span_otlp"]["ack"]["p50_ms"])} / '
            f'{fmt_ms(s["span_otlp"]["ack"]["p99_ms"])}, SDK span end {fmt_ms(s["span_sdk"]["ack"]["p50_ms"])} / '
            f'{fmt_ms(s["span_sdk"]["ack"]["p99_ms"])}')
    if p:
        acks += (f'; Prometheus remote write {fmt_ms(p["metric_remote_write"]["ack"]["p50_ms"])} / '
                 f'{fmt_ms(p["metric_remote_write"]["ack"]["p99_ms"])}')
    return head + "\n" + "\n".join(rows) + "\n\n" + acks + ".\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sonde", default=str(Path.home() / ".cache/sonde-bench-target/release/sonde"))
    ap.add_argument("--metrics", type=int, default=300, help="values per metric path")
    ap.add_argument("--spans", type=int, default=300, help="spans per span path")
    ap.add_argument("--incidents", type=int, default=30, help="incidents per Sonde run")
    ap.add_argument("--fast-interval", default="250ms",
                    help="a second Sonde incident run with this rule_evaluation_interval ('' to skip)")
    ap.add_argument("--prometheus-incidents", type=int, default=20, help="0 skips Prometheus")
    ap.add_argument("--prometheus-window", type=float, default=120.0,
                    help="seconds over which Prometheus incidents start (the run takes about this + 2.5 min)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out")
    ap.add_argument("--md-out")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.environ["SONDE_BIN"] = a.sonde
    res: dict = {"machine": {"cores": os.cpu_count(), "loadavg_before": os.getloadavg()[0]},
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    s = Sonde().start()
    try:
        res["sonde"] = sonde_metrics(s, a.metrics) | sonde_spans(s, a.spans)
    finally:
        s.cleanup()
    res["sonde"] |= sonde_incidents(a.sonde, a.incidents, None, rng)
    print("sonde done", file=sys.stderr, flush=True)
    if a.fast_interval:
        res["sonde_eval_250ms" if a.fast_interval == "250ms" else f"sonde_eval_{a.fast_interval}"] = \
            sonde_incidents(a.sonde, a.incidents, a.fast_interval, rng)
    if a.prometheus_incidents > 0:
        res["prometheus"] = prometheus_run(a.metrics, a.prometheus_incidents, a.prometheus_window, rng)
    res["machine"]["loadavg_after"] = os.getloadavg()[0]
    md = markdown(res)
    print(json.dumps(res, indent=2))
    print()
    print(md)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2))
    if a.md_out:
        Path(a.md_out).write_text(md)


if __name__ == "__main__":
    main()
