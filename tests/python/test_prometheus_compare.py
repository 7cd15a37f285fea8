"""A real Prometheus scrapes a target served by this test and remote-writes
everything to Sonde; the same PromQL queries, evaluated against both, must
give the same series and values.

The reference is the Debian `prometheus` package (2.42). Sonde's engine
follows Prometheus 3 where the two differ; the queries here avoid those
differences (see `pick_eval_time` and the note above QUERIES).
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from harness import Prometheus, ScrapeTarget, Sonde, close

SCRAPE_SECONDS = 21  # how long Prometheus scrapes before the comparison
EVAL_LAG = 3.0  # the evaluation time is this far behind the last scrape
RANGES_MS = [5_000, 10_000, 15_000, 60_000]  # the range selectors used below
PROMETHEUS_BIN = "/usr/bin/prometheus"


def exposition(n: int) -> str:
    """The target's metrics at its n-th scrape (n = 1, 2, ...)."""
    lines = [
        "# HELP demo_requests_total Requests handled.",
        "# TYPE demo_requests_total counter",
        f'demo_requests_total{{method="GET",code="200"}} {3 * n}',
        f'demo_requests_total{{method="GET",code="500"}} {n // 3}',
        f'demo_requests_total{{method="POST",code="200"}} {2 * n + 0.5 * (n % 2)}',
        "# HELP demo_resets_total A counter that restarts every 7 scrapes.",
        "# TYPE demo_resets_total counter",
        f"demo_resets_total {5 * (n % 7)}",
        "# HELP demo_temperature_celsius Room temperature.",
        "# TYPE demo_temperature_celsius gauge",
        f'demo_temperature_celsius{{room="a"}} {20 + (n % 5) * 0.5}',
        f'demo_temperature_celsius{{room="b"}} {18 - (n % 3) * 1.25}',
        "# HELP demo_queue_length Items waiting.",
        "# TYPE demo_queue_length gauge",
        f"demo_queue_length {(n * n) % 17}",
        "# HELP demo_latency_seconds Request latency.",
        "# TYPE demo_latency_seconds histogram",
    ]
    for path, k in (("/a", 1), ("/b", 3)):
        b01, b05, b1, inf = 2 * n * k, 5 * n * k, 7 * n * k + n // 2, 8 * n * k + n // 2 + n % 3
        lines += [
            f'demo_latency_seconds_bucket{{path="{path}",le="0.1"}} {b01}',
            f'demo_latency_seconds_bucket{{path="{path}",le="0.5"}} {b05}',
            f'demo_latency_seconds_bucket{{path="{path}",le="1"}} {b1}',
            f'demo_latency_seconds_bucket{{path="{path}",le="+Inf"}} {inf}',
            f'demo_latency_seconds_sum{{path="{path}"}} {0.05 * b01 + 0.3 * (b05 - b01) + 0.75 * (b1 - b05) + 2.5 * (inf - b1)}',
            f'demo_latency_seconds_count{{path="{path}"}} {inf}',
        ]
    lines += [
        "# HELP demo_rpc_seconds RPC durations.",
        "# TYPE demo_rpc_seconds summary",
        f'demo_rpc_seconds{{quantile="0.5"}} {0.2 + (n % 4) * 0.01}',
        f'demo_rpc_seconds{{quantile="0.99"}} {0.9 + (n % 6) * 0.02}',
        f"demo_rpc_seconds_sum {0.25 * n}",
        f"demo_rpc_seconds_count {n}",
    ]
    if n <= 6:
        # Disappears after the 6th scrape: Prometheus writes a stale marker.
        lines += [
            "# HELP demo_ephemeral A series that goes away.",
            "# TYPE demo_ephemeral gauge",
            f'demo_ephemeral{{id="x"}} {n}',
        ]
    return "\n".join(lines) + "\n"


class Target(ScrapeTarget):
    """The scrape target: values advance per scrape."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.lock = threading.Lock()
        super().__init__(self.render)

    def render(self) -> str:
        with self.lock:
            self.scrapes += 1
            return exposition(self.scrapes)


def prometheus_config(target: str, remote_write_url: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ["{target}"]
        labels:
          env: test
remote_write:
  - url: "{remote_write_url}"
    remote_timeout: 5s
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send: true
      send_interval: 2s
"""


class Pair:
    """Prometheus and Sonde holding the same data, and the evaluation time."""

    def __init__(self, prometheus: Prometheus, sonde: Sonde, target: Target, eval_time: float, start_time: float):
        self.prometheus = prometheus
        self.sonde = sonde
        self.target = target
        self.t = eval_time
        self.start_time = start_time


def wait_for(what: str, check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as e:  # an API error; retry until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def pick_eval_time(prometheus: Prometheus, t: float) -> float:
    """`t` moved by a few ms so that no sample lies exactly at t or at a
    window's start: Prometheus 2 includes a sample at the start of a range
    window and Prometheus 3 (which Sonde follows) excludes it."""
    data = prometheus.api("/api/v1/query", {"query": "up[2m]", "time": f"{t:.3f}"})
    stamps = {round(float(ts) * 1000) for s in data["result"] for ts, _ in s["values"]}
    t_ms = round(t * 1000)
    while any(t_ms - r in stamps for r in RANGES_MS + [0]):
        t_ms += 7
    return t_ms / 1000


@pytest.fixture(scope="module")
def pair_or_failure():
    """Prometheus scraping the target and remote-writing to Sonde, ready to
    compare; or, when that could not be set up, the reason why."""
    if not shutil.which(PROMETHEUS_BIN):
        pytest.fail(f"{PROMETHEUS_BIN} is missing: install the Debian package `prometheus` (scripts/test does)")
    sonde = Sonde()
    target = Target()
    prometheus = None
    try:
        sonde.start()
        prometheus = Prometheus(prometheus_config(target.address, sonde.remote_write_url), PROMETHEUS_BIN)
        prometheus.start()
        start = time.time()
        wait_for("the first scrape", lambda: target.scrapes >= 1, 30)
        time.sleep(SCRAPE_SECONDS)
        t = time.time() - EVAL_LAG
        # Remote write lags a little behind the scrapes; wait until every
        # series Prometheus has is in Sonde past the evaluation time.
        named = 'label_replace({job="demo"}, "name", "$1", "__name__", "(.*)")'
        caught_up = f"count(timestamp({named}) >= {t + 1:.3f})"

        def sonde_caught_up():
            want = prometheus.api("/api/v1/query", {"query": caught_up})["result"]
            got = sonde.query(caught_up)["result"]
            return want and got and want[0]["value"][1] == got[0]["value"][1]

        wait_for("Sonde to receive the remote-written samples", sonde_caught_up, 15)
        t = pick_eval_time(prometheus, t)
    except Exception as e:
        errors = [line for line in (prometheus.log_text() if prometheus else "").splitlines() if "level=error" in line]
        detail = "\n".join(errors[:5]) or (prometheus.log_text(3000) if prometheus else "")
        message = (
            f"setting up Prometheus -> Sonde failed: {e}\n"
            f"--- Prometheus errors:\n{detail}\n--- Sonde log:\n{sonde.log_text(3000)}"
        )
        cleanup_all(prometheus, target, sonde)
        yield SetupFailed(message)
        return
    try:
        yield Pair(prometheus, sonde, target, t, start)
    finally:
        cleanup_all(prometheus, target, sonde)


class SetupFailed:
    def __init__(self, message: str) -> None:
        self.message = message
        self.reported = False


@pytest.fixture
def pair(pair_or_failure) -> Pair:
    """The module's Prometheus/Sonde pair; a failed setup fails every test,
    the first one with the whole story and the others briefly."""
    if isinstance(pair_or_failure, SetupFailed):
        if pair_or_failure.reported:
            pytest.fail("Prometheus -> Sonde setup failed (see the first failure of this module)", pytrace=False)
        pair_or_failure.reported = True
        pytest.fail(pair_or_failure.message, pytrace=False)
    return pair_or_failure


def cleanup_all(prometheus, target, sonde) -> None:
    try:
        if prometheus is not None:
            prometheus.cleanup()
    finally:
        target.close()
        sonde.cleanup()


# ---------------------------------------------------------------- comparing


def labels_key(metric: dict) -> tuple:
    return tuple(sorted(metric.items()))


def normalise(data: dict) -> tuple[str, list]:
    rt = data["resultType"]
    if rt in ("scalar", "string"):
        return rt, [((), (round(float(data["result"][0]) * 1000), data["result"][1]))]
    out = []
    for item in data["result"]:
        if rt == "vector":
            t, v = item["value"]
            out.append((labels_key(item["metric"]), (round(float(t) * 1000), v)))
        else:
            out.append((labels_key(item["metric"]), [(round(float(t) * 1000), v) for t, v in item["values"]]))
    return rt, out


def same_value(a: str, b: str) -> bool:
    try:
        return close(float(a), float(b), rel=1e-9)
    except ValueError:
        return a == b


def same_points(a, b) -> bool:
    if isinstance(a, tuple):
        return a[0] == b[0] and same_value(a[1], b[1])
    return len(a) == len(b) and all(same_points(x, y) for x, y in zip(a, b))


def diff(expr: str, want: dict, got: dict, ordered: bool = False) -> str | None:
    """None when Sonde's answer `got` matches Prometheus's `want`."""
    wt, w = normalise(want)
    gt, g = normalise(got)
    if wt != gt:
        return f"{expr}: result type {gt}, Prometheus gives {wt}"
    problems = []
    if ordered and [k for k, _ in w] != [k for k, _ in g]:
        problems.append(f"order differs:\n  prometheus {[dict(k) for k, _ in w]}\n  sonde      {[dict(k) for k, _ in g]}")
    wd, gd = dict(w), dict(g)
    if len(wd) != len(w) or len(gd) != len(g):
        problems.append("a label set appears twice")
    for k in sorted(wd.keys() - gd.keys()):
        problems.append(f"missing in Sonde: {dict(k)} = {wd[k]}")
    for k in sorted(gd.keys() - wd.keys()):
        problems.append(f"only in Sonde: {dict(k)} = {gd[k]}")
    for k in sorted(wd.keys() & gd.keys()):
        if not same_points(wd[k], gd[k]):
            problems.append(f"{dict(k)}:\n  prometheus {wd[k]}\n  sonde      {gd[k]}")
    if not problems:
        return None
    return f"{expr} ({len(w)} series from Prometheus, {len(g)} from Sonde):\n" + "\n".join(problems)


# Queries whose empty answer is the point (the series went stale).
EMPTY = {"demo_ephemeral", "absent(up)"}


def compare_instant(pair: Pair, expr: str) -> None:
    params = {"query": expr, "time": f"{pair.t:.3f}"}
    want = pair.prometheus.api("/api/v1/query", params)
    got = pair.sonde.api("/api/v1/query", params)
    if expr in EMPTY:
        assert want["result"] == [], f"{expr}: Prometheus gives {want}, the test expects nothing"
    else:
        assert want["result"], f"{expr}: Prometheus gives nothing; a useless comparison"
    problem = diff(expr, want, got, ordered=expr.startswith("sort"))
    assert problem is None, problem


# Range windows stay inside the scraped data ([15s] at most, the data
# covers about 20 s before the evaluation time) except where noted: when a
# window starts before the first sample, rate() extrapolates differently in
# Prometheus 2 and 3.
QUERIES = [
    # selectors
    "up",
    "demo_requests_total",
    "demo_temperature_celsius",
    "demo_latency_seconds_bucket",
    "demo_rpc_seconds",
    'demo_requests_total{method="GET"}',
    'demo_requests_total{code!="200"}',
    'demo_requests_total{method=~"G.*"}',
    'demo_latency_seconds_bucket{le!~"0\\\\.1|1"}',
    '{__name__=~"demo_latency_seconds_(sum|count)", path="/b"}',
    'scrape_samples_scraped{job="demo"}',
    "demo_requests_total offset 5s",
    "demo_requests_total[5s]",
    "demo_resets_total[10s]",
    # demo_ephemeral went away after 6 scrapes: the stale marker ends it.
    "demo_ephemeral",
    "absent(demo_ephemeral)",
    "absent(up)",
    "count_over_time(demo_ephemeral[1m])",
    "last_over_time(demo_ephemeral[1m])",
    "count_over_time(up[1m])",
    # rates over counters (with a reset in demo_resets_total)
    "rate(demo_requests_total[10s])",
    "rate(demo_requests_total[5s])",
    "irate(demo_requests_total[10s])",
    "increase(demo_requests_total[15s])",
    "rate(demo_resets_total[10s])",
    "increase(demo_resets_total[15s])",
    "resets(demo_resets_total[15s])",
    "changes(demo_temperature_celsius[15s])",
    "delta(demo_temperature_celsius[10s])",
    "idelta(demo_queue_length[10s])",
    "deriv(demo_queue_length[10s])",
    "predict_linear(demo_queue_length[10s], 60)",
    # over_time
    "max_over_time(demo_temperature_celsius[10s])",
    "min_over_time(demo_temperature_celsius[10s])",
    "avg_over_time(demo_temperature_celsius[10s])",
    "sum_over_time(demo_queue_length[10s])",
    "quantile_over_time(0.5, demo_queue_length[15s])",
    "stddev_over_time(demo_queue_length[15s])",
    "present_over_time(demo_queue_length[5s])",
    # aggregations
    "sum(demo_requests_total)",
    "sum by (method) (rate(demo_requests_total[10s]))",
    "sum without (code) (demo_requests_total)",
    "avg by (room) (demo_temperature_celsius)",
    "max(demo_temperature_celsius)",
    "min by (job) (demo_temperature_celsius)",
    "count(demo_requests_total)",
    "count by (code) (demo_requests_total)",
    "topk(2, demo_requests_total)",
    "bottomk(1, demo_temperature_celsius)",
    "quantile(0.5, demo_requests_total)",
    "stddev(demo_requests_total)",
    'count_values("value", demo_temperature_celsius)',
    # histograms and summaries
    "histogram_quantile(0.9, rate(demo_latency_seconds_bucket[10s]))",
    "histogram_quantile(0.5, sum by (le) (rate(demo_latency_seconds_bucket[10s])))",
    "histogram_quantile(0.99, sum by (le, path) (increase(demo_latency_seconds_bucket[15s])))",
    "histogram_quantile(0.3, demo_latency_seconds_bucket)",
    "rate(demo_latency_seconds_sum[10s]) / rate(demo_latency_seconds_count[10s])",
    'demo_rpc_seconds{quantile="0.99"} - on() group_left() demo_rpc_seconds{quantile="0.5"}',
    # binary operators and vector matching
    "demo_requests_total / on() group_left() sum(demo_requests_total)",
    "demo_requests_total / on(method) group_left() sum by (method) (demo_requests_total)",
    "sum by (code) (rate(demo_requests_total[10s])) / ignoring(code) group_left() sum(rate(demo_requests_total[10s]))",
    "demo_temperature_celsius > on() group_left() avg(demo_temperature_celsius)",
    "demo_temperature_celsius > bool 19",
    "sum(demo_requests_total) - sum(demo_requests_total offset 5s)",
    'demo_requests_total and on(method) demo_requests_total{code="500"}',
    'demo_requests_total unless demo_requests_total{method="POST"}',
    "demo_temperature_celsius or demo_queue_length",
    "up == 1",
    "up * 2 + 1",
    "-demo_temperature_celsius",
    # functions
    "abs(-demo_temperature_celsius)",
    "clamp_max(demo_queue_length, 10)",
    "round(demo_latency_seconds_sum, 0.1)",
    "timestamp(up)",
    "vector(1)",
    "scalar(sum(up))",
    "time()",
    "absent(nonexistent_metric)",
    'label_replace(up, "host", "$1", "instance", "(.*):.*")',
    'label_join(up, "both", "/", "job", "env")',
    "sort_desc(demo_requests_total)",
    "sort(demo_temperature_celsius)",
    # subqueries
    "rate(demo_requests_total[10s:2s])",
    "max_over_time(rate(demo_requests_total[5s])[10s:1s])",
]


@pytest.mark.parametrize("expr", QUERIES)
def test_instant_query_matches_prometheus(pair, expr):
    compare_instant(pair, expr)


def test_at_modifier_matches_prometheus(pair):
    compare_instant(pair, f"demo_requests_total @ {pair.t - 4.5:.3f}")


@pytest.mark.parametrize(
    "expr",
    ["up", "demo_queue_length", "rate(demo_requests_total[5s])", "sum by (path) (demo_latency_seconds_count)"],
)
def test_range_query_matches_prometheus(pair, expr):
    params = {"query": expr, "start": f"{pair.t - 10:.3f}", "end": f"{pair.t:.3f}", "step": "1"}
    want = pair.prometheus.api("/api/v1/query_range", params)
    got = pair.sonde.api("/api/v1/query_range", params)
    assert want["result"], f"{expr}: Prometheus gives nothing"
    problem = diff(expr, want, got)
    assert problem is None, problem


@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/query_range"])
def test_form_encoded_post_matches_prometheus(pair, path):
    """Grafana sends its queries as form-encoded POSTs."""
    params = {"query": "sum by (method) (rate(demo_requests_total[5s]))", "time": f"{pair.t:.3f}"}
    if path.endswith("range"):
        params = {**params, "start": f"{pair.t - 5:.3f}", "end": f"{pair.t:.3f}", "step": "0.5"}
        del params["time"]
    want = pair.prometheus.api(path, params, method="POST")
    got = pair.sonde.api(path, params, method="POST")
    assert want["result"], "Prometheus gives nothing"
    problem = diff(params["query"], want, got)
    assert problem is None, problem


def window(pair: Pair) -> dict:
    return {"start": f"{pair.start_time - 60:.3f}", "end": f"{pair.t:.3f}"}


@pytest.mark.parametrize("match", ['{job="demo"}', "demo_latency_seconds_bucket", '{__name__=~"demo_.*", path="/a"}'])
def test_series_match_prometheus(pair, match):
    params = {"match[]": match, **window(pair)}
    want = pair.prometheus.api("/api/v1/series", params)
    got = pair.sonde.api("/api/v1/series", params)
    assert want, "Prometheus lists no series"
    assert sorted(labels_key(s) for s in got) == sorted(labels_key(s) for s in want)


def test_label_names_match_prometheus(pair):
    want = pair.prometheus.api("/api/v1/labels", window(pair))
    got = pair.sonde.api("/api/v1/labels", window(pair))
    assert "env" in want and "le" in want, want
    assert got == want


@pytest.mark.parametrize("label", ["__name__", "instance", "le", "code"])
def test_label_values_match_prometheus(pair, label):
    want = pair.prometheus.api(f"/api/v1/label/{label}/values", window(pair))
    got = pair.sonde.api(f"/api/v1/label/{label}/values", window(pair))
    assert want, f"Prometheus has no values for {label}"
    assert got == want


def test_metadata_matches_prometheus(pair):
    """Remote write carries the scraped metadata (TYPE and HELP). Prometheus
    shows only what its targets expose now (demo_ephemeral has gone), so
    Sonde may know more, but must agree on everything Prometheus shows."""
    want = pair.prometheus.api("/api/v1/metadata")
    want = {k: v for k, v in want.items() if k.startswith("demo_")}
    assert "demo_latency_seconds" in want and "demo_rpc_seconds" in want, want

    def sonde_view():
        got = pair.sonde.api("/api/v1/metadata")
        return {k: got.get(k) for k in want}

    try:
        wait_for("Sonde to receive the metadata", lambda: sonde_view() == want, 10)
    except AssertionError:
        assert sonde_view() == want


def test_remote_write_was_accepted_without_errors(pair):
    """Prometheus's own counters: nothing failed or was dropped on the way."""
    text = pair.prometheus.http.get(f"{pair.prometheus.url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith("prometheus_remote_storage_") and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            values[name_labels] = float(value)
    sent = sum(v for k, v in values.items() if k.startswith("prometheus_remote_storage_samples_total"))
    assert sent > 0, "Prometheus sent no samples"
    bad = {
        k: v
        for k, v in values.items()
        if v > 0
        and k.split("{")[0]
        in (
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_samples_dropped_total",
            "prometheus_remote_storage_samples_retried_total",
            "prometheus_remote_storage_metadata_failed_total",
            "prometheus_remote_storage_metadata_retried_total",
        )
    }
    assert not bad, f"remote write to Sonde had failures: {bad}\n(see the Prometheus log)"
