"""The stream pipeline after the WAL, end to end through `sonde serve`:
metrics derived from spans count each span once (a retried request and a
re-delivery are stored once) and are stamped with the spans' own time, so a
replayed hour of traces lands in that hour."""

from __future__ import annotations

import time

import requests

from harness import new_span_id, new_trace_id, otlp_span, post_otlp, resource_spans, traces_request

SEC = 1_000_000_000
SERVER, CLIENT = 2, 3


def shop_traces(start_ns: int, n: int, every_s: int):
    """`n` requests, one every `every_s` seconds from `start_ns`: frontend
    serves, calls checkout (client span), checkout serves."""
    frontend, checkout = [], []
    ids = []
    for i in range(n):
        t = start_ns + i * every_s * SEC
        trace = new_trace_id()
        root, call, served = new_span_id(), new_span_id(), new_span_id()
        ids.append(trace)
        frontend.append(otlp_span(trace, root, "GET /buy", t, t + 50_000_000, kind=SERVER))
        frontend.append(otlp_span(trace, call, "POST /checkout", t + 1_000_000, t + 40_000_000,
                                  parent=root, kind=CLIENT))
        checkout.append(otlp_span(trace, served, "POST /checkout", t + 2_000_000, t + 39_000_000,
                                  parent=call, kind=SERVER))
    req = traces_request(resource_spans("frontend", frontend), resource_spans("checkout", checkout))
    return req, ids


def wait_value(sonde, expr: str, at: float, want: float, timeout: float = 40.0) -> float:
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        vec = sonde.vector(expr, time=at)
        got = next(iter(vec.values()), None)
        if got == want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{expr} at {at}: {got}, expected {want}")


def test_a_replayed_and_retried_hour_of_traces_is_counted_once_in_its_own_time(sonde):
    hour_ago = (time.time_ns() // SEC - 3600) * SEC
    # Thirty minutes of traffic from an hour ago, one request every 10 s.
    req, ids = shop_traces(hour_ago, 180, 10)
    body = req.SerializeToString()
    # Sent, then sent again as a client retries when it missed the answer.
    for _ in range(2):
        r = post_otlp(sonde.traces_url, body)
        assert r.status_code == 200, r.text
    # Each span once, in the trace and in everything derived from it.
    trace = sonde.api(f"/api/v1/traces/{ids[7]}")
    assert len(trace["spans"]) == 3
    end = hour_ago / SEC + 1800
    calls = 'sum(traces_span_metrics_calls_total{service_name="checkout",span_kind="SPAN_KIND_SERVER"})'
    wait_value(sonde, calls, end + 10, 180.0)
    # In its own time: half of it by the middle of that half hour, none of
    # it before it began (no sample at all there).
    assert sonde.vector(calls, time=hour_ago / SEC + 905) == {frozenset(): 91.0}
    assert sonde.vector(calls, time=hour_ago / SEC - 60) == {}
    # The service graph of that past half hour has the call, counted once.
    edges = 'sum(traces_service_graph_request_total{client="frontend",server="checkout"})'
    wait_value(sonde, edges, end + 10, 180.0)
    # The critical path of each trace, in its own time: checkout's 37 ms of
    # every 50 ms request; frontend waits on it, and is charged only its own
    # 11 ms (and 2 ms of its client span).
    traces = 'sum(sonde_critical_path_traces_total{root_service="frontend",root_operation="GET /buy"})'
    wait_value(sonde, traces, end + 10, 180.0)
    on_path = sonde.vector('sum by (service, operation) (sonde_critical_path_seconds_total{root_operation="GET /buy"})',
                           time=end + 10)
    got = {(dict(k)["service"], dict(k)["operation"]): v for k, v in on_path.items()}
    assert got.keys() == {("checkout", "POST /checkout"), ("frontend", "GET /buy"), ("frontend", "POST /checkout")}, got
    assert abs(got[("checkout", "POST /checkout")] - 180 * 0.037) < 1e-6, got
    assert abs(got[("frontend", "GET /buy")] - 180 * 0.011) < 1e-6, got
    assert sonde.vector(traces, time=hour_ago / SEC - 60) == {}
    graph = sonde.api("/api/v1/service_graph", {"start": hour_ago / SEC, "end": end})
    pairs = {(e["source"], e["target"]) for e in graph["edges"]}
    assert ("frontend", "checkout") in pairs, graph
