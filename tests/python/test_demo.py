"""`sonde demo`: the server plus a simulated shop and the host agent. Every
view must have live data, across services, and the demo's clients must
follow a runtime policy."""

from __future__ import annotations

import json
import signal
import time

import pytest

from harness import Sonde

SERVICES = {"frontend", "catalog", "checkout", "inventory", "payments"}


@pytest.fixture
def demo():
    # A short incident cycle so a deployment event happens within the test.
    s = Sonde(["--rate", "40", "--workers", "16", "--incident-period", "12s"], command="demo")
    s.start()
    yield s
    code = s.stop() if s.alive() else s.proc.returncode
    s.cleanup()
    assert code == 0, f"sonde demo exited with {code}"


def wait_for(what: str, check, timeout: float = 20.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def test_demo_fills_every_signal_and_follows_policies(demo):
    api = demo.api_url

    def services():
        data = demo.get("/api/v1/services").json()["data"]
        by = {s["name"]: s for s in data}
        ok = all(n in by and by[n]["signals"]["traces"]["spans"] > 0 and by[n]["signals"]["metrics"]["series"] > 0
                 for n in SERVICES)
        return by if ok else None

    by = wait_for("every shop service with spans and metrics under one name", services)
    assert by["frontend"]["hosts"] == ["web-1"]
    assert by["checkout"]["signals"]["events"]["records"] > 0 or by["frontend"]["signals"]["events"]["records"] > 0

    # A checkout crosses services: context propagation works.
    def wide_trace():
        found = demo.get("/api/v1/traces", params={"service": "frontend", "name": "POST /checkout",
                                                    "limit": 50}).json()["data"]
        return [t for t in found if {"frontend", "checkout", "payments"} <= set(t["services"])]
    traces = wait_for("a checkout trace across frontend, checkout and payments", wide_trace)
    trace = demo.get(f"/api/v1/traces/{traces[0]['traceId']}").json()["data"]
    ids = {s["spanId"] for s in trace["spans"]}
    roots = [s for s in trace["spans"] if not s["parentSpanId"]]
    assert len(roots) == 1 and roots[0]["service"] == "frontend" and roots[0]["kind"] == "server"
    assert all(s["parentSpanId"] in ids for s in trace["spans"] if s["parentSpanId"]), "orphan spans"
    assert any(s["attributes"].get("db.system") == "postgresql" for s in trace["spans"])

    # RED metrics from the SDK, and the host agent's metrics.
    rate = wait_for("a request rate", lambda: demo.query(
        'sum(rate(http_server_requests_total{job="shop/frontend"}[30s]))')["result"])
    assert float(rate[0]["value"][1]) > 1.0
    cpu = demo.query("count(system_cpu_time_seconds_total)")
    assert float(cpu["result"][0]["value"][1]) > 0

    # RED metrics and the service graph, derived from the spans as they arrive.
    red = wait_for("span-derived RED metrics", lambda: demo.query(
        'sum by (service_name) (traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"})')["result"])
    assert SERVICES <= {r["metric"]["service_name"] for r in red}

    def graph():
        g = demo.get("/api/v1/service_graph").json()["data"]
        edges = {(e["source"], e["target"]): e for e in g["edges"]}
        want = {("frontend", "checkout"), ("checkout", "payments"), ("catalog", "postgresql")}
        return (g, edges) if want <= set(edges) else None
    g, edges = wait_for("the service graph with its database node", graph, timeout=30)
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["postgresql"]["type"] == "database" and nodes["checkout"]["type"] == "service"
    assert edges[("checkout", "payments")]["p95Ms"] > edges[("catalog", "postgresql")]["p50Ms"]

    # Events: page views with users and sessions; deployments on the cycle.
    views = demo.get("/api/v1/events", params={"name": "browser.page_view", "limit": 5}).json()["data"]["logs"]
    assert views and views[0]["attributes"]["user.id"].startswith("user-") and views[0]["attributes"]["session.id"]
    deploys = wait_for("a deployment event", lambda: demo.get(
        "/api/v1/events", params={"name": "deployment"}).json()["data"]["logs"])
    assert deploys[0]["service"] == "payments" and deploys[0]["attributes"]["service.version"] in ("1.5.0", "1.4.1")

    # The demo's SDKs and agent are connected clients; a policy reaches them.
    clients = {c["client_id"]: c for c in demo.get("/api/v1/clients").json()["data"]}
    assert {"demo-frontend", "demo-payments"} <= set(clients)
    assert any(c.get("kind") == "agent" and c["connected"] for c in clients.values()), clients.keys()
    r = demo.http.put(f"{api}/api/v1/policies/quiet-frontend", timeout=5, data=json.dumps(
        {"scope": {"kind": "service", "name": "frontend"}, "trace_sampling_ratio": 0.0}))
    assert r.status_code == 200, r.text

    def applied():
        c = {c["client_id"]: c for c in demo.get("/api/v1/clients").json()["data"]}["demo-frontend"]
        return c if c.get("effective", {}).get("trace_sampling_ratio") == 0.0 else None
    wait_for("the frontend SDK reporting the new sampling ratio", applied, timeout=15)
    # Sampled out at the root: no new frontend traces after a short drain.
    time.sleep(2.5)
    cutoff = time.time()
    time.sleep(2.0)
    recent = demo.get("/api/v1/traces", params={"service": "frontend", "start": f"{cutoff:.3f}"}).json()["data"]
    assert recent == [], f"{len(recent)} frontend traces after sampling went to 0"
