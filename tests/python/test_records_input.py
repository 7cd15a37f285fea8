"""Traces, logs and events: the OTLP project's examples, bad input, live tail,
and services and hosts across signals."""

from __future__ import annotations

from harness import _resource
from records_helpers import *  # noqa: F401,F403


# -- 5. the OTLP project's JSON examples ------------------------------------

EXAMPLE_TRACE_ID = "5b8efff798038103d269b633813fc60c"
EXAMPLE_T = 1544712660  # seconds, the examples' time


def example(name: str) -> dict:
    shared = os.environ.get("SONDE_SHARED")
    base = Path(shared) if shared else ROOT.parent / "shared"
    path = base / "data" / "otlp-examples" / name
    if not path.is_file():
        pytest.fail(f"OTLP example {name} not found at {path} (set SONDE_SHARED to the shared folder)",
                    pytrace=False)
    return json.loads(path.read_text())


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_otlp_examples(sonde_factory, encoding):
    trace_doc, logs_doc, events_doc = example("trace.json"), example("logs.json"), example("events.json")
    sonde = sonde_factory("--retention", "0")
    if encoding == "json":
        otlp_ok(post_otlp(sonde.traces_url, trace_doc), "trace.json")
        otlp_ok(post_otlp(sonde.logs_url, logs_doc), "logs.json")
    else:
        # As protobuf, on the API port.
        otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/traces",
                          otlp_proto_from_json(trace_doc, ExportTraceServiceRequest)), "trace.json")
        otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/logs",
                          otlp_proto_from_json(logs_doc, ExportLogsServiceRequest)), "logs.json")
    # events.json uses `eventName`, newer than these protobuf classes: JSON.
    otlp_ok(post_otlp(sonde.logs_url, events_doc), "events.json")

    data = get_trace(sonde, EXAMPLE_TRACE_ID)
    assert data["spans"] == [{
        "traceId": EXAMPLE_TRACE_ID,
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "traceState": "",
        "flags": 0,
        "name": "I'm a server span",
        "kind": "server",
        "service": "my.service",
        "host": "",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "durationNs": 1_000_000_000,
        "status": {"code": "unset", "message": ""},
        "attributes": {"my.span.attr": "some value"},
        "resource": {"service.name": "my.service"},
        "scope": {"name": "my.library", "version": "1.0.0"},
        "events": [],
        "links": [],
    }]
    # The upper-case id of the file names the same trace.
    upper = sonde.api(f"/api/v1/traces/{EXAMPLE_TRACE_ID.upper()}")
    assert (upper["traceId"], upper["spans"]) == (EXAMPLE_TRACE_ID, data["spans"])
    expected_log = {
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": "1544712660300000000",
        "severityNumber": 10,
        "severityText": "Information",
        "body": "Example log record",
        "eventName": "",
        "traceId": EXAMPLE_TRACE_ID,
        "spanId": "eee19b7ec3c1b174",
        "flags": 0,
        "service": "my.service",
        "host": "",
        "attributes": {
            "string.attribute": "some string",
            "boolean.attribute": True,
            "int.attribute": 10,
            "double.attribute": 637.704,
            "array.attribute": ["many", "values"],
            "map.attribute": {"some.map.key": "some value"},
        },
        "resource": {"service.name": "my.service"},
        "scope": {"name": "my.library", "version": "1.0.0"},
    }
    assert data["logs"] == [expected_log]

    # 2018 is far outside the default window: explicit ranges.
    window = {"start": EXAMPLE_T - 60, "end": EXAMPLE_T + 60}
    assert trace_ids(sonde) == []
    assert trace_ids(sonde, **window) == [EXAMPLE_TRACE_ID]
    assert trace_ids(sonde, start=0) == [EXAMPLE_TRACE_ID]
    assert trace_ids(sonde, service="my.service", name="I'm a server span", attr="my.span.attr=some value",
                     **window) == [EXAMPLE_TRACE_ID]
    (summary,) = sonde.api("/api/v1/traces", window)
    assert summary == {
        "traceId": EXAMPLE_TRACE_ID, "rootService": "my.service", "rootName": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000", "durationNs": 1_000_000_000, "spanCount": 1,
        "errorCount": 0, "services": {"my.service": 1},
    }

    assert logs(sonde, traceId=EXAMPLE_TRACE_ID, **window) == [expected_log]
    all_logs = logs(sonde, start=0)
    assert [l["body"] for l in all_logs if l["eventName"] == ""] == ["Example log record"]
    (event,) = logs(sonde, "/api/v1/events", name="browser.page_view", **window)
    assert event["eventName"] == "browser.page_view"
    assert (event["severityNumber"], event["severityText"]) == (9, "test severity text")
    assert event["timeUnixNano"] == "1544712660300000000"
    assert event["attributes"] == {"event.attribute": "some event attribute"}
    assert (event["traceId"], event["spanId"]) == ("", "")
    assert event["service"] == "my.service"
    # A structured body is JSON text.
    assert json.loads(event["body"]) == {
        "type": 0,
        "url": "https://www.guidgenerator.com/online-guid-generator.aspx",
        "referrer": "https://wwww.google.com",
        "title": "Free Online GUID Generator",
    }
    assert logs(sonde, "/api/v1/events", **window) == [event]
    assert logs(sonde, severity="10", **window) == [expected_log]

    # And through the Jaeger API, with microsecond times.
    r = jaeger_get(sonde, "/api/traces", {
        "service": "my.service", "start": (EXAMPLE_T - 60) * 1_000_000, "end": (EXAMPLE_T + 60) * 1_000_000,
    })
    assert r.status_code == 200, r.text
    (jt,) = r.json()["data"]
    (js,) = jt["spans"]
    assert (jt["traceID"], js["spanID"], js["operationName"], js["startTime"], js["duration"]) == (
        EXAMPLE_TRACE_ID, "eee19b7ec3c1b174", "I'm a server span", 1544712660000000, 1_000_000,
    )
    assert js["references"] == [{"refType": "CHILD_OF", "traceID": EXAMPLE_TRACE_ID, "spanID": "eee19b7ec3c1b173"}]
    assert jt["processes"][js["processID"]]["serviceName"] == "my.service"


# -- 6. bad input ------------------------------------------------------------


def test_bad_input(sonde):
    api_traces = f"{sonde.api_url}/api/v1/otlp/v1/traces"
    api_logs = f"{sonde.api_url}/api/v1/otlp/v1/logs"
    # Malformed payloads: 400 on both ports, both signals; gRPC: INVALID_ARGUMENT.
    for url in [sonde.traces_url, sonde.logs_url, api_traces, api_logs]:
        r = post_otlp(url, b"\xff\xff\xff\xff", "application/x-protobuf")
        assert r.status_code == 400, f"{url} protobuf: {r.status_code} {r.content!r}"
        r = post_otlp(url, b'{"resourceSpans": [', "application/json")
        assert r.status_code == 400, f"{url} JSON: {r.status_code} {r.content!r}"
        r = post_otlp(url, b'{"resourceLogs": "nope", "resourceSpans": 7}', "application/json")
        assert r.status_code == 400, f"{url} JSON of the wrong shape: {r.status_code} {r.content!r}"
        # Wrong content type: 415.
        r = post_otlp(url, b"hello", "text/plain")
        assert r.status_code == 415, f"{url} text/plain: {r.status_code} {r.content!r}"
        # A gzip header on a body that is not gzip.
        r = post_otlp(url, b"not gzip", "application/x-protobuf", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400, f"{url} bad gzip: {r.status_code} {r.content!r}"
    for method in [GRPC_TRACES, GRPC_LOGS]:
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(sonde.otlp_grpc_endpoint, method, b"\xff\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value)

    t = now_us_ns() - 30 * SEC
    good = new_trace_id()
    a, b = new_span_id(), new_span_id()

    # A span with a 3-byte trace id is rejected; the good ones are stored.
    req = traces_request(resource_spans("bad-input", [
        otlp_span(good, a, "good root", t, t + 10 * MS, kind=SERVER, flags=0x301),
        otlp_span(b"\x01\x02\x03", new_span_id(), "short trace id", t, t + MS),
        otlp_span(good, b, "good child", t + MS, t + 5 * MS, parent=a),
    ]))
    r = post_otlp(sonde.traces_url, req)
    assert r.status_code == 200, r.content
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1, answer
    assert answer.partial_success.error_message, answer
    spans = get_trace(sonde, good)["spans"]
    assert [(s["name"], s["parentSpanId"]) for s in spans] == [("good root", ""), ("good child", a)]
    assert spans[0]["flags"] == 0x301
    # Over gRPC, and as JSON: the same partial success.
    good2 = new_trace_id()
    req2 = traces_request(resource_spans("bad-input", [
        otlp_span(good2, new_span_id(), "grpc good", t, t + MS),
        otlp_span(good2, b"\x01\x02\x03", "short span id", t, t + MS),
    ]))
    answer = ExportTraceServiceResponse.FromString(grpc_export(sonde.otlp_grpc_endpoint, GRPC_TRACES, req2))
    assert answer.partial_success.rejected_spans == 1, answer
    assert answer.partial_success.error_message
    assert [s["name"] for s in get_trace(sonde, good2)["spans"]] == ["grpc good"]
    good3 = new_trace_id()
    doc = otlp_json(traces_request(resource_spans("bad-input", [
        otlp_span(good3, new_span_id(), "json good", t, t + MS),
        otlp_span(good3, new_span_id(), "all-zero trace id", t, t + MS),
    ])))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "0" * 32
    r = post_otlp(sonde.traces_url, doc)
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedSpans"] in (1, "1"), r.text
    assert r.json()["partialSuccess"]["errorMessage"], r.text
    assert [s["name"] for s in get_trace(sonde, good3)["spans"]] == ["json good"]

    # Long values are cut, ending with the marker; 200 attributes keep the first 128.
    long_ascii = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    long_utf8 = "é" * 5000  # 10 000 bytes of two-byte characters
    many = {f"attr.{i:03d}": i for i in range(200)}
    trace = new_trace_id()
    req = traces_request(resource_spans("limits", [
        otlp_span(trace, new_span_id(), "long values", t, t + MS, attrs={"long": long_ascii, "long.utf8": long_utf8,
                                                                          "short": "fine"}),
        otlp_span(trace, new_span_id(), "many attributes", t + MS, t + 2 * MS, attrs=many),
    ]))
    otlp_ok(post_otlp(sonde.traces_url, req))
    by = {s["name"]: s for s in get_trace(sonde, trace)["spans"]}
    long_attrs = by["long values"]["attributes"]
    assert long_attrs["short"] == "fine"
    for key, original in [("long", long_ascii), ("long.utf8", long_utf8)]:
        v = long_attrs[key]
        assert v.endswith(TRUNCATION_MARKER), f"{key}: {v[-40:]!r}"
        kept = v[: -len(TRUNCATION_MARKER)]
        assert original.startswith(kept), key
        assert 4000 <= len(v.encode()) <= 4096, f"{key}: {len(v.encode())} bytes"
    assert by["many attributes"]["attributes"] == {f"attr.{i:03d}": i for i in range(128)}

    # The same limits for logs.
    rec = otlp_log(t, "limits", attrs={"long": long_ascii, **many})
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("limits", [rec]))))
    (log,) = logs(sonde, service="limits")
    assert len(log["attributes"]) == 128
    assert log["attributes"]["long"].endswith(TRUNCATION_MARKER)
    assert long_ascii.startswith(log["attributes"]["long"][: -len(TRUNCATION_MARKER)])
    assert log["attributes"]["attr.000"] == 0 and "attr.127" not in log["attributes"]

    # gzip works for JSON and protobuf.
    gz = new_trace_id()
    req = traces_request(resource_spans("gzip", [otlp_span(gz, new_span_id(), "gzipped protobuf", t, t + MS)]))
    otlp_ok(post_otlp(sonde.traces_url, req, gzipped=True))
    req = traces_request(resource_spans("gzip", [otlp_span(gz, new_span_id(), "gzipped json", t + MS, t + 2 * MS)]))
    otlp_ok(post_otlp(sonde.traces_url, otlp_json(req), gzipped=True))
    assert [s["name"] for s in get_trace(sonde, gz)["spans"]] == ["gzipped protobuf", "gzipped json"]
    otlp_ok(post_otlp(sonde.logs_url, otlp_json(logs_request(resource_logs("gzip", [otlp_log(t, "gz log")]))),
                      gzipped=True))
    assert bodies(logs(sonde, service="gzip")) == ["gz log"]

    # Trace lookups: unknown id 404, malformed id 400.
    r = sonde.get(f"/api/v1/traces/{'ab' * 16}")
    assert r.status_code == 404, r.text
    assert (r.json()["status"], r.json()["errorType"]) == ("error", "not_found"), r.text
    for bad in ["xyz", "abc", "ab" * 17, "zz" * 16]:
        r = sonde.get(f"/api/v1/traces/{bad}")
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"
        assert r.json()["status"] == "error"
    # Bad log search parameters.
    for bad in [{"severity": "loud"}, {"traceId": "xyz"}, {"cursor": "garbage"}, {"limit": "many"}]:
        r = sonde.get("/api/v1/logs", bad)
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"


# -- 7. live tail ------------------------------------------------------------


def test_live_tail(sonde):
    t = now_us_ns()
    with SseStream(sonde.api_url, "/api/v1/tail?signal=logs&service=tail-a") as tail_logs, \
            SseStream(sonde.api_url, "/api/v1/tail?signal=spans&service=tail-a") as tail_spans, \
            SseStream(sonde.api_url, "/api/v1/tail?signal=logs&service=tail-a&severity=error") as tail_errors:
        for s in (tail_logs, tail_spans, tail_errors):
            assert s.status == 200, s.headers
            assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
            ev = s.next_event(5)
            assert ev is not None and ev[0] == "subscribed", ev

        sent = time.monotonic()
        otlp_ok(post_otlp(sonde.logs_url, logs_request(
            resource_logs("tail-b", [otlp_log(t, "from b")]),
            resource_logs("tail-a", [otlp_log(t + 1, "from a", severity=9, attrs={"k": "v"})]),
        )))
        trace = new_trace_id()
        otlp_ok(post_otlp(sonde.traces_url, traces_request(
            resource_spans("tail-a", [otlp_span(trace, new_span_id(), "tailed span", t, t + MS, kind=SERVER)]),
            resource_spans("tail-b", [otlp_span(trace, new_span_id(), "other span", t, t + MS)]),
        )))
        ev = tail_logs.next_event(2)
        assert ev is not None, "no log within 2 s"
        assert time.monotonic() - sent < 2.5
        kind, data = ev
        assert kind == "log", ev
        log = json.loads(data)
        assert (log["body"], log["service"], log["severityNumber"], log["timeUnixNano"]) == (
            "from a", "tail-a", 9, str(t + 1),
        )
        assert log["attributes"] == {"k": "v"}

        ev = tail_spans.next_event(2)
        assert ev is not None and ev[0] == "span", ev
        span = json.loads(ev[1])
        assert (span["name"], span["service"], span["traceId"], span["kind"]) == ("tailed span", "tail-a", trace, "server")

        # An error log now: the error subscriber sees only it.
        otlp_ok(post_otlp(sonde.logs_url, logs_request(
            resource_logs("tail-a", [otlp_log(t + 2, "it broke", severity=17)]),
        )))
        ev = tail_errors.next_event(2)
        assert ev is not None and ev[0] == "log" and json.loads(ev[1])["body"] == "it broke", ev
        ev = tail_logs.next_event(2)
        assert ev is not None and json.loads(ev[1])["body"] == "it broke", ev

        # Nothing else: not tail-b's log, not the span on the logs stream.
        assert tail_logs.events_during(0.7) == []
        assert tail_spans.events_during(0.1) == []
        assert tail_errors.events_during(0.1) == []

    # Events go to an events tail as `event: event`.
    with SseStream(sonde.api_url, "/api/v1/tail?signal=events&service=tail-a") as tail_events:
        assert tail_events.next_event(5)[0] == "subscribed"
        doc = json_logs_request("tail-a", [
            json_log(t + 3, "plain", {}),
            json_log(t + 4, "clicked", {"user.id": "u-7"}, "ui.click"),
        ])
        otlp_ok(post_otlp(sonde.logs_url, doc))
        ev = tail_events.next_event(2)
        assert ev is not None and ev[0] == "event", ev
        e = json.loads(ev[1])
        assert (e["body"], e["eventName"], e["attributes"]) == ("clicked", "ui.click", {"user.id": "u-7"})
        assert tail_events.events_during(0.3) == []

    # A bad filter is refused before streaming.
    r = sonde.get("/api/v1/tail", {"signal": "everything"})
    assert r.status_code == 400, r.text


# -- 8. services and hosts ---------------------------------------------------


def test_services_and_hosts(sonde):
    t = now_us_ns() - 10 * SEC
    trace = new_trace_id()
    root = new_span_id()
    otlp_ok(post_otlp(sonde.traces_url, traces_request(resource_spans("svc-a", [
        otlp_span(trace, root, "GET /a", t, t + 10 * MS, kind=SERVER),
        otlp_span(trace, new_span_id(), "a child", t + MS, t + 2 * MS, parent=root),
        otlp_span(trace, new_span_id(), "another child", t + 3 * MS, t + 4 * MS, parent=root),
    ], host="h1"))))
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("svc-b", [
        otlp_log(t, "b says hi"), otlp_log(t + MS, "b says bye"),
    ], host="h2"))))
    # A metric of svc-a: its `job` label.
    point = NumberDataPoint(time_unix_nano=time.time_ns(), as_double=3.5, attributes=key_values({"room": "x"}))
    metrics = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=_resource("svc-a", None, {"service.instance.id": "a-0"}),
        scope_metrics=[ScopeMetrics(metrics=[Metric(name="svc_a_temperature", gauge=Gauge(data_points=[point]))])],
    )])
    r = post_otlp(sonde.otlp_http_metrics_url, metrics)
    assert r.status_code == 200, r.content
    assert sonde.vector('svc_a_temperature{job="svc-a"}', time.time()) != {}

    services = {s["name"]: s for s in sonde.api("/api/v1/services")}
    assert set(services) == {"svc-a", "svc-b"}, services
    a, b = services["svc-a"], services["svc-b"]
    assert a["signals"] == {
        "metrics": {"series": 1}, "traces": {"spans": 3}, "logs": {"records": 0}, "events": {"records": 0},
    }, a
    assert a["hosts"] == ["h1"], a
    assert b["signals"] == {
        "metrics": {"series": 0}, "traces": {"spans": 0}, "logs": {"records": 2}, "events": {"records": 0},
    }, b
    assert b["hosts"] == ["h2"], b
    for s in (a, b):
        first, last = int(s["firstSeenUnixNano"]), int(s["lastSeenUnixNano"])
        assert 0 < first <= last, s

    hosts = {h["name"]: h for h in sonde.api("/api/v1/hosts")}
    assert set(hosts) == {"h1", "h2"}, hosts
    assert hosts["h1"]["services"] == ["svc-a"]
    assert hosts["h1"]["signals"]["traces"] == {"spans": 3}
    assert hosts["h2"]["services"] == ["svc-b"]
    assert hosts["h2"]["signals"]["logs"] == {"records": 2}


def test_open_tail_does_not_hold_up_shutdown(sonde_factory):
    """A browser left on the live tail must not delay SIGTERM: the stream
    ends and the server exits promptly and cleanly."""
    sonde = sonde_factory()
    try:
        with SseStream(sonde.api_url, "/api/v1/tail?signal=all") as tail:
            assert tail.next_event(5)[0] == "subscribed"
            started = time.monotonic()
            code = sonde.stop(grace=20)
            took = time.monotonic() - started
            assert code == 0, f"exit code {code}"
            assert took < 3, f"SIGTERM took {took:.1f}s with a live tail open:\n{sonde.log_text()}"
            assert tail.next_event(1) is None and tail._ended, "the tail stream did not end"
    finally:
        if not sonde.alive():
            sonde.start()  # the fixture expects a running server to stop


def test_a_subscriber_that_does_not_read_is_dropped_and_never_slows_ingest(sonde):
    """A tail client that stops reading: its socket fills, its queue
    (`tail_subscriber_buffer`, 4 MiB) fills, and it is cut off with a
    `dropped` event and its queue released at once, while every write keeps
    being acknowledged."""
    stall = SseStream(sonde.api_url, "/api/v1/tail?signal=logs")
    try:
        assert stall.next_event(5)[0] == "subscribed"
        t = now_us_ns()
        body = "x" * 16_000
        session = requests.Session()
        started = time.monotonic()
        for i in range(1600):
            req = logs_request(resource_logs("flood", [otlp_log(t + i, f"{i} {body}")]))
            r = session.post(sonde.logs_url, data=req.SerializeToString(),
                             headers={"content-type": "application/x-protobuf"}, timeout=10)
            assert r.status_code == 200, (i, r.status_code, r.text[:200])
        elapsed = time.monotonic() - started
        # Reading again drains what the socket held; the subscriber then
        # finds it fell more than its queue behind and gets the notice.
        kinds = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ev = stall.next_event(2)
            if ev is None:
                break
            kinds.add(ev[0])
            if ev[0] == "dropped":
                assert "too slow" in json.loads(ev[1])["reason"]
                break
        assert "dropped" in kinds, kinds
        metrics = sonde.get("/metrics").text
        dropped = [l for l in metrics.splitlines() if l.startswith("sonde_tail_dropped_subscribers_total ")]
        assert dropped == ["sonde_tail_dropped_subscribers_total 1"], dropped
        queued = [l for l in metrics.splitlines() if l.startswith("sonde_tail_queued_bytes ")]
        assert queued == ["sonde_tail_queued_bytes 0"], queued
        assert elapsed < 60, f"ingest took {elapsed:.1f}s with a stalled subscriber"
    finally:
        stall.close()
    page = sonde.get("/api/v1/logs", params={"service": "flood", "start": 0, "limit": 5000}).json()["data"]
    assert len(page["logs"]) == 1600
