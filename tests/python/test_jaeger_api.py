"""The Jaeger query API on the API port (what Grafana's Jaeger data source
reads): services, operations, trace search with Jaeger's parameters (times
in microseconds, tags as JSON) and traces in Jaeger's JSON model."""

from __future__ import annotations

import json
import time

import requests

from harness import new_span_id, new_trace_id, otlp_ok, otlp_span, post_otlp, resource_spans, traces_request

MS = 1_000_000
SEC = 1_000_000_000
INTERNAL, SERVER, CLIENT = 1, 2, 3
STATUS_ERROR = 2
FRONT, BACK = "jg-frontend", "jg-backend"


def get(sonde, path: str, params=None) -> requests.Response:
    return requests.get(f"{sonde.api_url}{path}", params=params, timeout=30)


def data_of(r: requests.Response):
    assert r.status_code == 200, f"{r.url}: {r.status_code} {r.text}"
    body = r.json()
    assert not body.get("errors"), body
    return body["data"]


def found(sonde, **params) -> set[str]:
    traces = data_of(get(sonde, "/api/traces", params))
    return {t["traceID"] for t in traces}


def tags(items: list[dict]) -> dict:
    return {t["key"]: (t["type"], t["value"]) for t in items}


def send(sonde):
    now = time.time_ns() // 1000 * 1000
    t = {"A": now - 10 * 60 * SEC, "B": now - 8 * 60 * SEC, "C": now - 6 * 60 * SEC, "D": now - 3 * 3600 * SEC}
    ids = {k: new_trace_id() for k in t}
    roots = {k: new_span_id() for k in t}

    def span(k, name, dur_ms, offset_ms=0, root=False, parent=None, **kw):
        s0 = t[k] + offset_ms * MS
        return otlp_span(ids[k], roots[k] if root else new_span_id(), name, s0, s0 + dur_ms * MS,
                         parent=roots[k] if parent is None and not root else (parent or ""), **kw)

    req = traces_request(
        resource_spans(FRONT, [
            span("A", "GET /", 120, root=True, kind=SERVER, attrs={"http.status_code": 200}),
            span("A", "render", 30, offset_ms=80, kind=INTERNAL),
            span("B", "GET /", 600, root=True, kind=SERVER, status=STATUS_ERROR, attrs={"http.status_code": 500}),
            span("C", "render", 10, root=True, kind=INTERNAL),
            span("D", "GET /", 100, root=True, kind=SERVER, attrs={"http.status_code": 200}),
        ], host="web-1", resource={"deployment.environment": "prod"}),
        resource_spans(BACK, [
            span("A", "query db", 50, offset_ms=10, kind=CLIENT, attrs={"db.system": "postgresql"}),
            span("B", "query db", 500, offset_ms=50, kind=CLIENT, status=STATUS_ERROR, status_message="timeout",
                 attrs={"db.system": "postgresql"}, events=[(t["B"] + 549 * MS, "timeout", {"after.ms": 500})]),
        ], host="db-1"),
    )
    otlp_ok(post_otlp(sonde.traces_url, req))
    return t, ids, roots


def test_jaeger_services_and_operations(sonde):
    send(sonde)
    assert sorted(data_of(get(sonde, "/api/services"))) == [BACK, FRONT]
    assert sorted(data_of(get(sonde, f"/api/services/{FRONT}/operations"))) == ["GET /", "render"]
    assert data_of(get(sonde, f"/api/services/{BACK}/operations")) == ["query db"]
    assert data_of(get(sonde, "/api/services/nobody/operations")) == []
    ops = data_of(get(sonde, "/api/operations", {"service": FRONT}))
    assert sorted((o["name"], o["spanKind"]) for o in ops) == [("GET /", "server"), ("render", "internal")]
    ops = data_of(get(sonde, "/api/operations", {"service": BACK}))
    assert [(o["name"], o["spanKind"]) for o in ops] == [("query db", "client")]


def test_jaeger_trace_search(sonde):
    t, ids, roots = send(sonde)
    A, B, C, D = (ids[k] for k in "ABCD")
    assert found(sonde, service=FRONT, lookback="1h") == {A, B, C}
    assert found(sonde, service=FRONT, lookback="4h") == {A, B, C, D}
    assert found(sonde, service=BACK, lookback="1h") == {A, B}
    assert found(sonde, service="nobody", lookback="1h") == set()
    assert found(sonde, service=FRONT, operation="render", lookback="1h") == {A, C}
    assert found(sonde, service=FRONT, operation="GET /", tags=json.dumps({"http.status_code": "500"}),
                 lookback="1h") == {B}
    assert found(sonde, service=BACK, tags=json.dumps({"db.system": "postgresql"}), lookback="1h") == {A, B}
    assert found(sonde, service=BACK, tags=json.dumps({"error": "true"}), lookback="1h") == {B}
    assert found(sonde, service=FRONT, minDuration="300ms", lookback="1h") == {B}
    assert found(sonde, service=FRONT, maxDuration="20ms", lookback="1h") == {C}
    # start/end in microseconds since the epoch.
    us = lambda ns: ns // 1000  # noqa: E731
    assert found(sonde, service=FRONT, start=us(t["B"] - 60 * SEC), end=us(t["B"] + 60 * SEC)) == {B}
    assert found(sonde, service=FRONT, start=us(t["D"] - 60 * SEC), end=us(t["D"] + 60 * SEC)) == {D}
    # The newest first, cut at the limit.
    newest = data_of(get(sonde, "/api/traces", {"service": FRONT, "lookback": "1h", "limit": 1}))
    assert [x["traceID"] for x in newest] == [C]

    # A search answer holds whole traces: B with both services' spans.
    (b,) = data_of(get(sonde, "/api/traces", {"service": BACK, "tags": json.dumps({"error": "true"}),
                                               "lookback": "1h"}))
    check_trace_b(b, t, ids, roots)


def check_trace_b(b: dict, t: dict, ids: dict, roots: dict) -> None:
    B = ids["B"]
    assert b["traceID"] == B
    spans = {s["operationName"]: s for s in b["spans"]}
    assert set(spans) == {"GET /", "query db"}
    root, db = spans["GET /"], spans["query db"]
    assert root["spanID"] == roots["B"] and root["references"] == []
    assert db["references"] == [{"refType": "CHILD_OF", "traceID": B, "spanID": roots["B"]}]
    assert (root["startTime"], root["duration"]) == (t["B"] // 1000, 600_000)
    assert (db["startTime"], db["duration"]) == ((t["B"] + 50 * MS) // 1000, 500_000)
    rt, dt = tags(root["tags"]), tags(db["tags"])
    assert rt["span.kind"] == ("string", "server") and dt["span.kind"] == ("string", "client")
    assert rt["error"] == ("bool", True) and dt["error"] == ("bool", True)
    assert rt["http.status_code"] == ("int64", 500)
    assert dt["db.system"] == ("string", "postgresql")
    assert db["logs"] == [{
        "timestamp": (t["B"] + 549 * MS) // 1000,
        "fields": [{"key": "event", "type": "string", "value": "timeout"},
                   {"key": "after.ms", "type": "int64", "value": 500}],
    }]
    # One process per service (and resource).
    procs = b["processes"]
    assert len(procs) == 2, procs
    assert procs[root["processID"]]["serviceName"] == FRONT
    assert procs[db["processID"]]["serviceName"] == BACK
    ft = tags(procs[root["processID"]]["tags"])
    assert ft["host.name"] == ("string", "web-1") and ft["deployment.environment"] == ("string", "prod")
    assert tags(procs[db["processID"]]["tags"])["host.name"] == ("string", "db-1")


def test_jaeger_trace_by_id(sonde):
    t, ids, roots = send(sonde)
    r = get(sonde, f"/api/traces/{ids['B']}")
    (b,) = data_of(r)
    check_trace_b(b, t, ids, roots)

    # A: three spans, two of them from one resource, so one process.
    (a,) = data_of(get(sonde, f"/api/traces/{ids['A']}"))
    spans = {s["operationName"]: s for s in a["spans"]}
    assert set(spans) == {"GET /", "render", "query db"}
    assert spans["GET /"]["processID"] == spans["render"]["processID"] != spans["query db"]["processID"]
    assert spans["render"]["references"] == [{"refType": "CHILD_OF", "traceID": ids["A"], "spanID": roots["A"]}]
    assert "error" not in tags(spans["GET /"]["tags"])
    assert tags(spans["render"]["tags"]).get("span.kind", ("string", "internal")) == ("string", "internal")

    # Unknown: 404 with errors; malformed: 400.
    r = get(sonde, f"/api/traces/{'cd' * 16}")
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["errors"] and body["errors"][0]["code"] == 404, body
    assert not body["data"], body
    r = get(sonde, "/api/traces/not-a-trace-id")
    assert r.status_code == 400, r.text
    assert r.json()["errors"], r.text
