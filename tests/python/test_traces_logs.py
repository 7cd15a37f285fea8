"""Traces, logs and events end to end: the real OpenTelemetry Python SDK (and
hand-built OTLP requests) export to a running Sonde over OTLP/gRPC and
OTLP/HTTP; Sonde's API must give back exactly what was sent."""

from __future__ import annotations

from records_helpers import *  # noqa: F401,F403


# -- 1. a nested trace from the SDK ----------------------------------------

ROOT_ATTRS = {
    "http.route": "/checkout",
    "app.str": "hello",
    "app.int": 42,
    "app.float": 2.5,
    "app.bool": True,
    "app.strs": ["a", "b"],
    "app.ints": [1, 2, 3],
    "app.floats": [0.5, 1.5],
    "app.bools": [True, False],
}


@pytest.mark.parametrize("transport", ["grpc", "http"], ids=["grpc", "http-protobuf"])
def test_sdk_trace_reads_back_as_sent(sonde, transport):
    service = f"shop-{transport}"
    host = f"node-{transport}"
    resource = Resource.create({"service.name": service, "host.name": host, "deployment.environment": "e2e"})
    exporter = span_exporter(sonde, transport)
    provider = tracer_provider(resource, exporter)
    tracer = provider.get_tracer("sonde.tests.traces", "2.0.1")
    t0 = now_us_ns() - 60 * SEC
    at = lambda ms: t0 + ms * MS  # noqa: E731
    try:
        # The span the link points at, in a trace of its own.
        other = tracer.start_span("warm cache", context=Context(), start_time=at(-5000))
        other.end(end_time=at(-4000))
        with tracer.start_as_current_span(
            "GET /checkout", context=Context(), kind=SpanKind.SERVER, attributes=ROOT_ATTRS,
            start_time=at(0), end_on_exit=False,
        ) as root:
            with tracer.start_as_current_span(
                "validate cart", links=[Link(other.get_span_context(), {"link.reason": "warmed-by"})],
                start_time=at(10), end_on_exit=False,
            ) as c1:
                c1.end(end_time=at(60))
            with tracer.start_as_current_span("charge card", start_time=at(100), end_on_exit=False) as c2:
                with tracer.start_as_current_span(
                    "POST /payments", kind=SpanKind.CLIENT,
                    attributes={"http.request.method": "POST", "server.port": 8443},
                    start_time=at(120), end_on_exit=False,
                ) as gc:
                    gc.add_event("retry", {"attempt": 2}, timestamp=at(200))
                    gc.record_exception(ValueError("card declined"), timestamp=at(390))
                    gc.set_status(Status(StatusCode.ERROR, "payment failed"))
                    gc.end(end_time=at(400))
                c2.end(end_time=at(450))
            root.end(end_time=at(500))
        assert provider.force_flush(20_000), "force_flush timed out"
        exporter.assert_all_ok()
        assert len(exporter.sent) == 5

        trace_id = tid(root)
        ids = {"root": sid(root), "c1": sid(c1), "c2": sid(c2), "gc": sid(gc)}
        data = get_trace(sonde, trace_id)
        spans = data["spans"]
        # Sorted by start time; the linked trace's span is not part of it.
        assert [s["name"] for s in spans] == ["GET /checkout", "validate cart", "charge card", "POST /payments"]
        by = {s["name"]: s for s in spans}
        r, v, c, p = by["GET /checkout"], by["validate cart"], by["charge card"], by["POST /payments"]
        assert [s["spanId"] for s in spans] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]
        assert all(s["traceId"] == trace_id for s in spans)
        assert (r["parentSpanId"], v["parentSpanId"], c["parentSpanId"], p["parentSpanId"]) == (
            "", ids["root"], ids["root"], ids["c2"],
        )
        assert [s["kind"] for s in spans] == ["server", "internal", "internal", "client"]
        for s in spans:
            assert (s["service"], s["host"]) == (service, host), s
            assert s["scope"] == {"name": "sonde.tests.traces", "version": "2.0.1"}, s
            assert s["resource"]["service.name"] == service
            assert s["resource"]["host.name"] == host
            assert s["resource"]["deployment.environment"] == "e2e"
            assert s["resource"]["telemetry.sdk.language"] == "python"
            assert s["traceState"] == ""
        # Times as decimal strings in ns; durations as numbers.
        assert (r["startTimeUnixNano"], r["endTimeUnixNano"], r["durationNs"]) == (str(at(0)), str(at(500)), 500 * MS)
        assert (p["startTimeUnixNano"], p["endTimeUnixNano"], p["durationNs"]) == (str(at(120)), str(at(400)), 280 * MS)
        assert v["durationNs"] == 50 * MS and c["durationNs"] == 350 * MS
        # Typed attribute values, arrays as JSON arrays.
        assert r["attributes"] == ROOT_ATTRS
        assert type(r["attributes"]["app.int"]) is int and type(r["attributes"]["app.float"]) is float
        assert p["attributes"] == {"http.request.method": "POST", "server.port": 8443}
        assert v["attributes"] == {} and c["attributes"] == {}
        # Status.
        assert r["status"] == {"code": "unset", "message": ""}
        assert p["status"] == {"code": "error", "message": "payment failed"}
        # Events: the plain one and the recorded exception.
        assert [(e["name"], e["timeUnixNano"]) for e in p["events"]] == [
            ("retry", str(at(200))), ("exception", str(at(390))),
        ]
        assert p["events"][0]["attributes"] == {"attempt": 2}
        exc = p["events"][1]["attributes"]
        assert exc["exception.type"] == "ValueError"
        assert exc["exception.message"] == "card declined"
        assert "ValueError: card declined" in exc["exception.stacktrace"]
        assert r["events"] == [] and r["links"] == []
        # The link to the other trace.
        assert v["links"] == [{
            "traceId": tid(other), "spanId": sid(other), "traceState": "",
            "attributes": {"link.reason": "warmed-by"},
        }]
        assert data["logs"] == []
        # The other trace is a trace of its own.
        other_spans = get_trace(sonde, tid(other))["spans"]
        assert [(s["name"], s["parentSpanId"], s["durationNs"]) for s in other_spans] == [("warm cache", "", SEC)]

        # The same spans delivered again (an exporter retry) appear once.
        assert exporter.export(exporter.sent[:]) == SpanExportResult.SUCCESS
        again = get_trace(sonde, trace_id)["spans"]
        assert [s["spanId"] for s in again] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]

        # -- the same trace through the Jaeger API --
        resp = jaeger_get(sonde, f"/api/traces/{trace_id}")
        assert resp.status_code == 200, resp.text
        jdata = resp.json()["data"]
        assert len(jdata) == 1, jdata
        jt = jdata[0]
        assert jt["traceID"] == trace_id
        jspans = {s["operationName"]: s for s in jt["spans"]}
        assert set(jspans) == {"GET /checkout", "validate cart", "charge card", "POST /payments"}
        for s in jt["spans"]:
            assert s["traceID"] == trace_id
            proc = jt["processes"][s["processID"]]
            assert proc["serviceName"] == service
            ptags = jaeger_tags(proc["tags"])
            assert ptags["host.name"] == ("string", host), proc
        jr, jv, jc, jp = (jspans[n] for n in ["GET /checkout", "validate cart", "charge card", "POST /payments"])
        assert [jr["spanID"], jv["spanID"], jc["spanID"], jp["spanID"]] == [ids["root"], ids["c1"], ids["c2"], ids["gc"]]
        refs = lambda s: sorted((x["refType"], x["traceID"], x["spanID"]) for x in s["references"])  # noqa: E731
        assert refs(jr) == []
        assert refs(jv) == sorted([("CHILD_OF", trace_id, ids["root"]), ("FOLLOWS_FROM", tid(other), sid(other))])
        assert refs(jc) == [("CHILD_OF", trace_id, ids["root"])]
        assert refs(jp) == [("CHILD_OF", trace_id, ids["c2"])]
        # Microseconds.
        assert (jr["startTime"], jr["duration"]) == (at(0) // 1000, 500_000)
        assert (jp["startTime"], jp["duration"]) == (at(120) // 1000, 280_000)
        assert (jv["duration"], jc["duration"]) == (50_000, 350_000)
        rt = jaeger_tags(jr["tags"])
        assert rt["span.kind"] == ("string", "server")
        assert rt["http.route"] == ("string", "/checkout")
        assert rt["app.int"] == ("int64", 42)
        assert rt["app.float"] == ("float64", 2.5)
        assert rt["app.bool"] == ("bool", True)
        assert "error" not in rt
        pt = jaeger_tags(jp["tags"])
        assert pt["span.kind"] == ("string", "client")
        assert pt["error"] == ("bool", True)
        assert pt["server.port"] == ("int64", 8443)
        # Span events as Jaeger logs, the name in the `event` field.
        assert [l["timestamp"] for l in jp["logs"]] == [at(200) // 1000, at(390) // 1000]
        f0, f1 = (jaeger_tags(l["fields"]) for l in jp["logs"])
        assert f0 == {"event": ("string", "retry"), "attempt": ("int64", 2)}
        assert f1["event"] == ("string", "exception")
        assert f1["exception.type"] == ("string", "ValueError")
        assert f1["exception.message"] == ("string", "card declined")
    finally:
        provider.shutdown()


# -- 2. logs inside spans, from the SDK's logging handler ------------------


@pytest.mark.parametrize("transport", ["grpc", "http"], ids=["grpc", "http-protobuf"])
def test_sdk_logs_inside_spans(sonde, transport):
    service, host = f"orders-{transport}", f"box-{transport}"
    resource = Resource.create({"service.name": service, "host.name": host})
    span_exp = span_exporter(sonde, transport)
    provider = tracer_provider(resource, span_exp)
    tracer = provider.get_tracer("sonde.tests.logs")
    log_exp = log_exporter(sonde, transport)
    log_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp, schedule_delay_millis=3_600_000))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=log_provider)
    logger_name = f"sonde.tests.orders.{transport}"
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)

    def pause():
        time.sleep(0.003)  # distinct record times, so newest-first is one order

    try:
        with tracer.start_as_current_span("handle order", context=Context(), kind=SpanKind.SERVER) as root:
            logger.debug("loading cart %s", "c-42")
            pause()
            logger.info("order placed", extra={"order.id": "o-17", "attempt": 3})
            pause()
            logger.warning("inventory low for sku-1")
            pause()
            with tracer.start_as_current_span("send receipt") as child:
                logger.error("payment retry failed", extra={"order.id": "o-17"})
                pause()
                logger.info("receipt emailed")
                pause()
        logger.info("outside any span")
        assert provider.force_flush(20_000)
        assert log_provider.force_flush(20_000)
        span_exp.assert_all_ok()
        log_exp.assert_all_ok()
        assert len(log_exp.sent) == 6

        trace_id, root_id, child_id = tid(root), sid(root), sid(child)
        newest_first = [
            "receipt emailed", "payment retry failed", "inventory low for sku-1", "order placed", "loading cart c-42",
        ]

        # The trace lists the logs that carry its id.
        data = get_trace(sonde, trace_id)
        assert [s["name"] for s in data["spans"]] == ["handle order", "send receipt"]
        in_trace = sorted(data["logs"], key=lambda l: int(l["timeUnixNano"]))
        assert bodies(in_trace) == newest_first[::-1]
        assert [l["spanId"] for l in in_trace] == [root_id, root_id, root_id, child_id, child_id]
        assert all(l["traceId"] == trace_id for l in in_trace)

        # Search by trace id: newest first, every field as sent.
        got = logs(sonde, traceId=trace_id)
        assert bodies(got) == newest_first
        by = {l["body"]: l for l in got}
        want_sev = {
            "loading cart c-42": (5, "DEBUG"), "order placed": (9, "INFO"), "inventory low for sku-1": (13, "WARN"),
            "payment retry failed": (17, "ERROR"), "receipt emailed": (9, "INFO"),
        }
        for body, l in by.items():
            assert (l["severityNumber"], l["severityText"]) == want_sev[body], l
            assert (l["service"], l["host"]) == (service, host), l
            assert l["scope"]["name"] == logger_name, l
            assert l["resource"]["service.name"] == service
            assert l["eventName"] == ""
            assert l["attributes"]["code.function"] == "test_sdk_logs_inside_spans", l
            assert isinstance(l["attributes"]["code.lineno"], int), l
            assert int(l["observedTimeUnixNano"]) >= int(l["timeUnixNano"]) > 0
        assert by["order placed"]["attributes"]["order.id"] == "o-17"
        assert by["order placed"]["attributes"]["attempt"] == 3
        assert by["payment retry failed"]["attributes"]["order.id"] == "o-17"
        assert "order.id" not in by["receipt emailed"]["attributes"]

        assert bodies(logs(sonde, traceId=trace_id, spanId=child_id)) == newest_first[:2]
        # Severity: a minimum, by name or number.
        assert bodies(logs(sonde, traceId=trace_id, severity="warn")) == newest_first[1:3]
        assert bodies(logs(sonde, traceId=trace_id, severity="13")) == newest_first[1:3]
        assert bodies(logs(sonde, traceId=trace_id, severity="error")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, severity="17")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, severity="debug")) == newest_first
        assert bodies(logs(sonde, traceId=trace_id, contains="retry")) == ["payment retry failed"]
        assert bodies(logs(sonde, traceId=trace_id, contains="cart")) == ["loading cart c-42"]
        assert bodies(logs(sonde, attr="order.id=o-17")) == ["payment retry failed", "order placed"]
        assert bodies(logs(sonde, attr="attempt=3")) == ["order placed"]
        assert bodies(logs(sonde, contains="no such text")) == []

        # All of the service's logs, the one outside a span first.
        everything = logs(sonde, service=service)
        assert bodies(everything) == ["outside any span"] + newest_first
        assert (everything[0]["traceId"], everything[0]["spanId"]) == ("", "")
        assert bodies(logs(sonde, host=host)) == bodies(everything)
        assert logs(sonde, host="no-such-host") == []
        assert logs(sonde, service="no-such-service") == []

        # Pages of two walk every record exactly once, in order.
        assert walk_pages(sonde, "/api/v1/logs", {"service": service}, 2) == bodies(everything)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
        log_provider.shutdown()


def walk_pages(sonde, path: str, params: dict, limit: int, key=lambda l: l["body"]) -> list:
    out, cursor = [], None
    for _ in range(100):
        page_params = {**params, "limit": limit}
        if cursor is not None:
            page_params["cursor"] = cursor
        data = sonde.api(path, page_params)
        assert len(data["logs"]) <= limit, data
        out.extend(key(l) for l in data["logs"])
        cursor = data["nextCursor"]
        if cursor is None:
            return out
        assert data["logs"], f"an empty page with a next cursor: {data}"
    raise AssertionError(f"more than 100 pages: {out}")


def test_pagination_over_records_with_equal_times(sonde):
    """Many records at the same nanosecond: pages still neither repeat nor skip."""
    t = now_us_ns() - 30 * SEC
    times = [t] * 5 + [t + 1] * 3 + [t - 1000] * 4
    recs = [otlp_log(ts, f"rec-{i:02d}", attrs={"i": i}) for i, ts in enumerate(times)]
    otlp_ok(post_otlp(sonde.logs_url, logs_request(resource_logs("pager", recs))))
    everything = logs(sonde, service="pager", limit=100)
    assert sorted(bodies(everything)) == [f"rec-{i:02d}" for i in range(12)]
    # Newest first.
    got_times = [int(l["timeUnixNano"]) for l in everything]
    assert got_times == sorted(got_times, reverse=True)
    key = lambda l: (int(l["timeUnixNano"]), l["body"])  # noqa: E731
    for limit in (1, 2, 3, 5):
        walked = walk_pages(sonde, "/api/v1/logs", {"service": "pager"}, limit, key=key)
        assert sorted(b for _, b in walked) == [f"rec-{i:02d}" for i in range(12)], f"limit={limit}: {walked}"
        assert [t for t, _ in walked] == sorted(got_times, reverse=True), f"limit={limit}: {walked}"


# -- 3. events --------------------------------------------------------------


def test_events_by_name_and_attributes(sonde):
    t = now_us_ns() - 30 * SEC
    svc = "web-frontend"
    otlp_ok(post_otlp(sonde.logs_url, json_logs_request(svc, [
        json_log(t + 1 * MS, "checkout 1", {"user.id": "u-1", "session.id": "s-1"}, "cart.checkout"),
        json_log(t + 2 * MS, "checkout 2", {"user.id": "u-2", "session.id": "s-2"}, "cart.checkout"),
        json_log(t + 3 * MS, "viewed", {"user.id": "u-1", "session.id": "s-1"}, "page.view"),
        json_log(t + 4 * MS, "plain log line", {"user.id": "u-1", "session.id": "s-1"}),
    ])))
    # ... and one through the API port's OTLP endpoint.
    r = post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/logs", json_logs_request(svc, [
        json_log(t + 5 * MS, "checkout 3", {"user.id": "u-3", "session.id": "s-3"}, "cart.checkout"),
    ]))
    otlp_ok(r)
    # The SDK has no event API in this version: `event.name` as an attribute.
    log_exp = log_exporter(sonde, "http")
    log_provider = LoggerProvider(resource=Resource.create({"service.name": svc}), shutdown_on_exit=False)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp, schedule_delay_millis=3_600_000))
    handler = LoggingHandler(level=logging.INFO, logger_provider=log_provider)
    logger = logging.getLogger("sonde.tests.events.sdk")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.info("button clicked", extra={"event.name": "ui.click", "user.id": "u-1", "session.id": "s-9"})
        assert log_provider.force_flush(20_000)
        log_exp.assert_all_ok()
    finally:
        logger.removeHandler(handler)
        log_provider.shutdown()

    checkout = logs(sonde, "/api/v1/events", name="cart.checkout")
    assert bodies(checkout) == ["checkout 3", "checkout 2", "checkout 1"]
    assert all(e["eventName"] == "cart.checkout" and e["service"] == svc for e in checkout)
    assert [(e["attributes"]["user.id"], e["attributes"]["session.id"]) for e in checkout] == [
        ("u-3", "s-3"), ("u-2", "s-2"), ("u-1", "s-1"),
    ]
    assert checkout[2]["timeUnixNano"] == str(t + 1 * MS)
    assert checkout[2]["scope"] == {"name": "sonde.tests.events", "version": "0.1"}

    # Every event, never the plain log.
    all_events = logs(sonde, "/api/v1/events")
    assert bodies(all_events) == ["button clicked", "checkout 3", "viewed", "checkout 2", "checkout 1"]
    click = all_events[0]
    assert click["eventName"] == "ui.click"
    assert click["attributes"]["event.name"] == "ui.click"
    assert (click["attributes"]["user.id"], click["attributes"]["session.id"]) == ("u-1", "s-9")
    assert bodies(logs(sonde, "/api/v1/events", name="ui.click")) == ["button clicked"]

    # Attribute filters, alone and with the name.
    assert bodies(logs(sonde, "/api/v1/events", attr="user.id=u-1")) == ["button clicked", "viewed", "checkout 1"]
    assert bodies(logs(sonde, "/api/v1/events", name="cart.checkout", attr="user.id=u-1")) == ["checkout 1"]
    assert bodies(logs(sonde, "/api/v1/events", attr=["user.id=u-1", "session.id=s-1"])) == ["viewed", "checkout 1"]
    assert logs(sonde, "/api/v1/events", name="no.such.event") == []

    # Events are log records too.
    assert bodies(logs(sonde, "/api/v1/logs", event="*")) == bodies(all_events)
    assert bodies(logs(sonde, "/api/v1/logs", event="page.view")) == ["viewed"]
    assert bodies(logs(sonde, "/api/v1/logs", attr="user.id=u-1")) == [
        "button clicked", "plain log line", "viewed", "checkout 1",
    ]
    plain = logs(sonde, "/api/v1/logs", contains="plain")
    assert [(l["body"], l["eventName"]) for l in plain] == [("plain log line", "")]


# -- 4. trace search --------------------------------------------------------


def test_trace_search_filters(sonde):
    now = now_us_ns()
    ids = {k: new_trace_id() for k in ["T0", "T1", "T2", "T3", "T4"]}
    start = {
        "T0": now - 2 * 3600 * SEC, "T1": now - 9 * 60 * SEC, "T2": now - 8 * 60 * SEC,
        "T3": now - 7 * 60 * SEC, "T4": now - 6 * 60 * SEC,
    }
    root = {k: new_span_id() for k in ids}

    def span(k, name, dur_ms, offset_ms=0, parent="", span_id=None, **kw):
        s0 = start[k] + offset_ms * MS
        return otlp_span(ids[k], span_id or new_span_id(), name, s0, s0 + dur_ms * MS, parent=parent, **kw)

    # T0, T1 over gRPC.
    req = traces_request(
        resource_spans("search-api", [
            span("T0", "GET /users", 100, span_id=root["T0"], kind=SERVER, attrs={"tenant": "acme", "http.route": "/users"}),
            span("T1", "GET /users", 50, span_id=root["T1"], kind=SERVER, status=STATUS_OK,
                 attrs={"tenant": "acme", "http.route": "/users"}),
        ]),
        resource_spans("search-db", [span("T1", "db query", 20, offset_ms=10, parent=root["T1"], kind=CLIENT)]),
    )
    resp = ExportTraceServiceResponse.FromString(grpc_export(sonde.otlp_grpc_endpoint, GRPC_TRACES, req))
    assert not resp.HasField("partial_success"), resp
    # T2, T3 over HTTP, protobuf, gzipped.
    req = traces_request(
        resource_spans("search-api", [
            span("T2", "GET /orders", 400, span_id=root["T2"], kind=SERVER, attrs={"tenant": "globex", "http.route": "/orders"}),
        ]),
        resource_spans("search-db", [
            span("T2", "SELECT orders", 200, offset_ms=50, parent=root["T2"], kind=CLIENT, status=STATUS_ERROR,
                 status_message="deadlock"),
        ]),
        resource_spans("search-worker", [span("T3", "process job", 1200, span_id=root["T3"], kind=CONSUMER,
                                              attrs={"tenant": "acme"})]),
    )
    otlp_ok(post_otlp(sonde.traces_url, req, gzipped=True))
    # T4 as JSON on the API port.
    req = traces_request(resource_spans("search-api", [
        span("T4", "GET /users", 300, span_id=root["T4"], kind=SERVER, status=STATUS_ERROR,
             attrs={"tenant": "acme", "http.route": "/users"}),
    ]))
    otlp_ok(post_otlp(f"{sonde.api_url}/api/v1/otlp/v1/traces", otlp_json(req)))

    T = lambda *names: [ids[n] for n in names]  # noqa: E731
    # The default window is the last hour: T0 is older.
    assert trace_ids(sonde) == T("T4", "T3", "T2", "T1")
    assert trace_ids(sonde, service="search-api") == T("T4", "T2", "T1")
    assert trace_ids(sonde, service="search-db") == T("T2", "T1")
    assert trace_ids(sonde, service="search-worker") == T("T3")
    assert trace_ids(sonde, service="nobody") == []
    assert trace_ids(sonde, name="GET /users") == T("T4", "T1")
    assert trace_ids(sonde, name="SELECT orders") == T("T2")
    assert trace_ids(sonde, minDuration="250ms") == T("T4", "T3", "T2")
    assert trace_ids(sonde, minDuration="1s") == T("T3")
    assert trace_ids(sonde, minDuration="250ms", maxDuration="350ms") == T("T4")
    assert trace_ids(sonde, maxDuration="100ms") == T("T1")
    assert trace_ids(sonde, status="error") == T("T4", "T2")
    assert trace_ids(sonde, attr="tenant=acme") == T("T4", "T3", "T1")
    assert trace_ids(sonde, attr="tenant=globex") == T("T2")
    assert trace_ids(sonde, attr=["tenant=acme", "http.route=/users"]) == T("T4", "T1")
    assert trace_ids(sonde, service="search-api", name="GET /users", minDuration="250ms") == T("T4")
    assert trace_ids(sonde, limit=2) == T("T4", "T3")
    # Explicit windows, as Unix seconds and as RFC 3339.
    assert trace_ids(sonde, start=(now - 3 * 3600 * SEC) / SEC) == T("T4", "T3", "T2", "T1", "T0")
    rfc = lambda ns: datetime.fromtimestamp(ns / SEC, tz=timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    assert trace_ids(sonde, start=rfc(start["T0"] - 60 * SEC), end=rfc(start["T0"] + 60 * SEC)) == T("T0")
    assert trace_ids(sonde, start=(now - 3 * 3600 * SEC) / SEC, name="GET /users") == T("T4", "T1", "T0")

    # The summary of a trace.
    (t2,) = [t for t in sonde.api("/api/v1/traces", {"status": "error"}) if t["traceId"] == ids["T2"]]
    assert t2 == {
        "traceId": ids["T2"], "rootService": "search-api", "rootName": "GET /orders",
        "startTimeUnixNano": str(start["T2"]), "durationNs": 400 * MS, "spanCount": 2, "errorCount": 1,
        "services": {"search-api": 1, "search-db": 1},
    }
    (t3,) = sonde.api("/api/v1/traces", {"service": "search-worker"})
    assert (t3["rootName"], t3["spanCount"], t3["errorCount"], t3["durationNs"]) == ("process job", 1, 0, 1200 * MS)

    # Bad parameters are 400s.
    for bad in [{"minDuration": "fast"}, {"status": "bogus"}, {"attr": "novalue"}, {"start": "yesterday"}]:
        r = sonde.get("/api/v1/traces", bad)
        assert r.status_code == 400, f"{bad}: {r.status_code} {r.text}"
        assert r.json()["status"] == "error"
