"""The real OpenTelemetry Node.js SDK as a client: tests/node/emit.mjs
exports a nested trace, logs inside its spans and an event over OTLP/HTTP
(protobuf) and OTLP/gRPC; Sonde's API and Jaeger API must give back exactly
what was sent.

Needs node and `npm ci --prefix tests/node` (scripts/test runs it). Without
them the tests fail, unless SONDE_SKIP_NODE=1 is set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from records_helpers import *  # noqa: F401,F403

NODE_DIR = ROOT / "tests" / "node"
EMIT = NODE_DIR / "emit.mjs"
SERVICE, HOST = "node-checkout", "node-host"
SCOPE = {"name": "sonde.tests.node", "version": "0.3.1"}
LOG_SCOPE = {"name": "sonde.tests.node.logs", "version": "0.3.1"}
ROOT_ATTRS = {
    "http.route": "/checkout",
    "app.str": "hello",
    "app.int": 42,
    "app.float": 2.5,
    "app.bool": True,
    "app.strs": ["a", "b"],
}


@pytest.fixture
def node() -> str:
    """The node binary; fails (before a server starts) when node or the
    packages are missing."""
    if os.environ.get("SONDE_SKIP_NODE") == "1":
        pytest.skip("SONDE_SKIP_NODE=1")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Node.js 20+ is needed; set SONDE_SKIP_NODE=1 to skip)", pytrace=False)
    if not (NODE_DIR / "node_modules" / "@opentelemetry" / "sdk-trace-node").is_dir():
        pytest.fail(
            f"{NODE_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/node` "
            "(scripts/test does), or set SONDE_SKIP_NODE=1 to skip",
            pytrace=False,
        )
    return node


def emit(node: str, endpoint: str, transport: str) -> dict:
    """Runs the Node script; returns the ids it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    p = subprocess.run(
        [node, str(EMIT), endpoint, transport],
        capture_output=True, text=True, timeout=120, env=env, cwd=NODE_DIR,
    )
    assert p.returncode == 0, f"emit.mjs exited with {p.returncode}:\n{p.stderr}\n{p.stdout}"
    lines = p.stdout.strip().splitlines()
    assert lines, f"emit.mjs printed nothing:\n{p.stderr}"
    out = json.loads(lines[-1])
    assert out["exported"] == {"spans": 4, "logs": 3}, out
    return out


@pytest.mark.parametrize("transport", ["http-proto", "grpc"])
def test_node_sdk_trace_logs_and_event(node, sonde, transport):
    endpoint = sonde.otlp_http_url if transport == "http-proto" else f"http://{sonde.otlp_grpc_endpoint}"
    out = emit(node, endpoint, transport)
    trace_id, linked_trace = out["traceId"], out["linkedTraceId"]
    ids = out["spanIds"]
    t0 = int(out["startNs"])
    at = lambda ms: t0 + ms * MS  # noqa: E731

    # -- the trace ---------------------------------------------------------
    data = get_trace(sonde, trace_id)
    spans = data["spans"]
    # Sorted by start time; the linked span is in a trace of its own.
    assert [s["name"] for s in spans] == ["GET /checkout", "price cart", "SELECT orders"], spans
    r, c, g = spans
    assert [s["spanId"] for s in spans] == [ids["root"], ids["child"], ids["grandchild"]]
    assert [s["parentSpanId"] for s in spans] == ["", ids["root"], ids["child"]]
    assert [s["kind"] for s in spans] == ["server", "internal", "client"]
    for s in spans:
        assert s["traceId"] == trace_id, s
        assert (s["service"], s["host"]) == (SERVICE, HOST), s
        assert s["scope"] == SCOPE, s
        assert s["resource"]["service.name"] == SERVICE, s
        assert s["resource"]["host.name"] == HOST, s
        assert s["resource"]["telemetry.sdk.language"] == "nodejs", s
    # Times as decimal ns strings, durations as numbers.
    assert [(s["startTimeUnixNano"], s["endTimeUnixNano"], s["durationNs"]) for s in spans] == [
        (str(at(0)), str(at(300)), 300 * MS),
        (str(at(10)), str(at(250)), 240 * MS),
        (str(at(40)), str(at(200)), 160 * MS),
    ]
    # Typed attribute values: JS integers as ints, 2.5 as a double, arrays as arrays.
    assert r["attributes"] == ROOT_ATTRS
    assert type(r["attributes"]["app.int"]) is int and type(r["attributes"]["app.float"]) is float
    assert type(r["attributes"]["app.bool"]) is bool
    assert c["attributes"] == {}
    assert g["attributes"] == {"db.system": "postgresql", "db.operation.name": "SELECT", "server.port": 5432}
    # Status.
    assert r["status"] == {"code": "unset", "message": ""}
    assert c["status"] == {"code": "unset", "message": ""}
    assert g["status"] == {"code": "error", "message": "db timeout"}
    # recordException(new Error("db timeout")).
    assert [(e["name"], e["timeUnixNano"]) for e in g["events"]] == [("exception", str(at(190)))], g["events"]
    exc = g["events"][0]["attributes"]
    assert exc["exception.type"] == "Error", exc
    assert exc["exception.message"] == "db timeout", exc
    assert exc["exception.stacktrace"].startswith("Error: db timeout\n"), exc
    assert "emit.mjs" in exc["exception.stacktrace"], exc
    assert r["events"] == [] and c["events"] == []
    # The link to the other trace.
    assert c["links"] == [{
        "traceId": linked_trace, "spanId": ids["linked"], "traceState": "",
        "attributes": {"link.reason": "warmed-by"},
    }]
    assert r["links"] == [] and g["links"] == []
    other = get_trace(sonde, linked_trace)
    assert [(s["spanId"], s["name"], s["parentSpanId"], s["durationNs"]) for s in other["spans"]] == [
        (ids["linked"], "warm cache", "", 1000 * MS),
    ]
    assert other["logs"] == []

    # -- the logs listed under the trace ------------------------------------
    in_trace = sorted(data["logs"], key=lambda l: int(l["timeUnixNano"]))
    assert [
        (l["body"], l["spanId"], l["severityNumber"], l["severityText"], l["eventName"], l["timeUnixNano"])
        for l in in_trace
    ] == [
        ("pricing cart c-42", ids["child"], 9, "INFO", "", str(at(20))),
        ("discount service slow", ids["child"], 13, "WARN", "", str(at(30))),
        ("checkout completed", ids["root"], 9, "INFO", "checkout.completed", str(at(290))),
    ], in_trace
    for l in in_trace:
        assert l["traceId"] == trace_id, l
        assert (l["service"], l["host"]) == (SERVICE, HOST), l
        assert l["scope"] == LOG_SCOPE, l
        assert l["resource"]["service.name"] == SERVICE, l
    info, warn, event = in_trace
    assert info["attributes"] == {}
    assert warn["attributes"] == {"cart.id": "c-42", "latency.ms": 250, "retry": True}
    assert type(warn["attributes"]["latency.ms"]) is int
    # The same logs through the log search.
    assert bodies(logs(sonde, traceId=trace_id, spanId=ids["child"])) == ["discount service slow", "pricing cart c-42"]
    assert bodies(logs(sonde, traceId=trace_id, severity="warn")) == ["discount service slow"]

    # -- the event ----------------------------------------------------------
    events = logs(sonde, "/api/v1/events", name="checkout.completed", start="0")
    assert len(events) == 1, events
    e = events[0]
    assert (e["body"], e["eventName"], e["service"]) == ("checkout completed", "checkout.completed", SERVICE), e
    assert (e["traceId"], e["spanId"]) == (trace_id, ids["root"]), e
    assert e["attributes"] == {
        "event.name": "checkout.completed", "user.id": "u-17", "session.id": "s-9", "cart.total": 99.5,
    }, e
    assert bodies(logs(sonde, "/api/v1/events", attr="user.id=u-17", start="0")) == ["checkout completed"]

    # -- the Jaeger API -----------------------------------------------------
    resp = jaeger_get(sonde, f"/api/traces/{trace_id}")
    assert resp.status_code == 200, resp.text
    jdata = resp.json()["data"]
    assert len(jdata) == 1, jdata
    jt = jdata[0]
    assert jt["traceID"] == trace_id
    assert len(jt["spans"]) == len(spans)
    js = {s["spanID"]: s for s in jt["spans"]}
    assert set(js) == {ids["root"], ids["child"], ids["grandchild"]}
    jr, jc, jg = js[ids["root"]], js[ids["child"]], js[ids["grandchild"]]
    assert [jr["operationName"], jc["operationName"], jg["operationName"]] == [s["name"] for s in spans]
    refs = lambda s: sorted((x["refType"], x["traceID"], x["spanID"]) for x in s["references"])  # noqa: E731
    assert refs(jr) == []
    assert refs(jc) == sorted([("CHILD_OF", trace_id, ids["root"]), ("FOLLOWS_FROM", linked_trace, ids["linked"])])
    assert refs(jg) == [("CHILD_OF", trace_id, ids["child"])]
    for s in jt["spans"]:
        assert s["traceID"] == trace_id
        proc = jt["processes"][s["processID"]]
        assert proc["serviceName"] == SERVICE, proc
        assert jaeger_tags(proc["tags"])["host.name"] == ("string", HOST), proc
    assert (jr["startTime"], jr["duration"]) == (at(0) // 1000, 300_000)
    assert (jg["startTime"], jg["duration"]) == (at(40) // 1000, 160_000)
    rt = jaeger_tags(jr["tags"])
    assert rt["span.kind"] == ("string", "server")
    assert rt["app.int"] == ("int64", 42)
    assert rt["app.float"] == ("float64", 2.5)
    assert rt["app.bool"] == ("bool", True)
    assert "error" not in rt
    gt = jaeger_tags(jg["tags"])
    assert gt["span.kind"] == ("string", "client")
    assert gt["error"] == ("bool", True)
    assert [l["timestamp"] for l in jg["logs"]] == [at(190) // 1000]
    f = jaeger_tags(jg["logs"][0]["fields"])
    assert f["event"] == ("string", "exception")
    assert f["exception.message"] == ("string", "db timeout")
