"""Alerting and recording rules end to end: a real `sonde serve` with a
Prometheus rule file, metrics pushed over remote write, alerts read back
through the Prometheus API, notifications received by a real HTTP webhook
and by the real Debian `prometheus-alertmanager`, and reloads (HTTP and
SIGHUP) that keep alert states and refuse bad files."""

from __future__ import annotations

import json
import re
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from harness import LoggedProcess, free_port
from test_remote_write import PROMETHEUS_HEADERS, write_request

ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

RULES = """
groups:
  - name: queues
    rules:
      - alert: QueueTooDeep
        expr: queue_depth > 100
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "Queue {{ $labels.queue }} on {{ $labels.instance }} holds {{ $value }} items"
          pretty: '{{ $value | humanize }} items ({{ printf "%.2f" $value }})'
      - record: queue:depth:sum
        expr: sum by (queue) (queue_depth)
"""


class Webhook:
    """A tiny HTTP server collecting the JSON bodies POSTed to it; the first
    `fail_first` requests are answered 503, to exercise retries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    hook.requests += 1
                    fail = hook.requests <= hook.fail_first
                    if not fail:
                        hook.bodies.append(json.loads(body))
                self.send_response(503 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hooks: list[Webhook] = []

    def make(fail_first: int = 0) -> Webhook:
        h = Webhook(fail_first)
        hooks.append(h)
        return h

    yield make
    for h in hooks:
        h.close()


def wait_for(what: str, fn, timeout: float = 10.0, interval: float = 0.05):
    """Polls `fn` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def push(sonde, name: str, labels: dict, value: float) -> None:
    body = write_request([({"__name__": name, **labels}, [(int(time.time() * 1000), value)])])
    r = requests.post(sonde.remote_write_url, data=body, headers=PROMETHEUS_HEADERS, timeout=10)
    assert r.status_code in (200, 204), f"remote write: {r.status_code} {r.text}"


def alerts(sonde, name: str) -> list[dict]:
    return [a for a in sonde.api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


# The group of built-in anomaly rules every server runs (anomaly_detection).
BUILTIN_GROUP = "sonde-builtin-anomalies"


def file_groups(data: dict) -> list[dict]:
    """The groups of /api/v1/rules that come from rule files."""
    return [g for g in data["groups"] if g["name"] != BUILTIN_GROUP]


def rules_by_name(sonde) -> dict[str, dict]:
    return {r["name"]: r for g in file_groups(sonde.api("/api/v1/rules")) for r in g["rules"]}


def write_rules(directory: Path, text: str, name: str = "rules.yml") -> None:
    # Written then renamed, so a reload never reads half a file.
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    tmp.rename(directory / name)


def reload(sonde) -> requests.Response:
    return sonde.http.post(f"{sonde.api_url}/-/reload", timeout=30)


LABELS = {"queue": "orders", "instance": "mq-1", "job": "broker"}


def test_alert_goes_pending_firing_resolved_with_webhook_notifications(sonde_factory, webhook, tmp_path):
    hook = webhook(fail_first=1)
    write_rules(tmp_path, RULES)
    sonde = sonde_factory(
        "--rule-files", f"{tmp_path}/*.yml",
        "--alert-webhooks", hook.url,
        "--alert-resend-delay", "1h",
    )

    # Healthy and unknown before data: the rules are loaded and evaluated.
    rules = wait_for("a first evaluation", lambda: (r := rules_by_name(sonde)) and r["QueueTooDeep"]["health"] == "ok" and r)
    assert rules["QueueTooDeep"]["state"] == "inactive"
    assert rules["queue:depth:sum"]["type"] == "recording"

    push(sonde, "queue_depth", LABELS, 2500)
    pushed = time.monotonic()
    pending = wait_for("the pending alert", lambda: alerts(sonde, "QueueTooDeep"), timeout=3)
    assert pending[0]["state"] == "pending"
    a = pending[0]
    assert a["labels"] == {"alertname": "QueueTooDeep", "severity": "page", **LABELS}
    assert a["annotations"] == {
        "summary": "Queue orders on mq-1 holds 2500 items",
        "pretty": "2.5k items (2500.00)",
    }
    assert a["value"] == "2.5e+03"
    assert RFC3339.match(a["activeAt"]), a

    firing = wait_for(
        "the firing alert",
        lambda: [x for x in alerts(sonde, "QueueTooDeep") if x["state"] == "firing"],
        timeout=2 + 2.5,
    )
    assert firing[0]["activeAt"] == a["activeAt"]
    assert time.monotonic() - pushed >= 2 - 0.1, "fired before its `for`"

    # The webhook got Alertmanager's payload (after one refused attempt).
    payload = wait_for("the firing notification", lambda: hook.received(), timeout=5)[0]
    assert hook.requests >= 2
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "sonde"
    assert payload["groupKey"] == '{}:{alertname="QueueTooDeep"}'
    assert payload["groupLabels"] == {"alertname": "QueueTooDeep"}
    assert payload["commonLabels"] == {"alertname": "QueueTooDeep", "severity": "page", **LABELS}
    assert payload["commonAnnotations"]["summary"] == "Queue orders on mq-1 holds 2500 items"
    assert payload["externalURL"] == sonde.api_url
    assert payload["truncatedAlerts"] == 0
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == payload["commonLabels"]
    assert alert["annotations"]["pretty"] == "2.5k items (2500.00)"
    assert RFC3339.match(alert["startsAt"])
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"].startswith(f"{sonde.api_url}/graph?g0.expr=queue_depth")
    assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])

    # /api/v1/rules in Prometheus's shape.
    [group] = [g for g in sonde.api("/api/v1/rules")["groups"] if g["name"] == "queues"]
    assert group["file"].endswith("rules.yml")
    assert group["interval"] == 1
    assert RFC3339.match(group["lastEvaluation"])
    rule = group["rules"][0]
    assert {k: rule[k] for k in ("name", "query", "duration", "keepFiringFor", "state", "health", "type")} == {
        "name": "QueueTooDeep",
        "query": "queue_depth > 100",
        "duration": 2,
        "keepFiringFor": 0,
        "state": "firing",
        "health": "ok",
        "type": "alerting",
    }
    assert rule["labels"] == {"severity": "page"}
    assert "{{ $labels.queue }}" in rule["annotations"]["summary"]
    assert rule["alerts"][0]["state"] == "firing"
    assert "lastError" not in rule
    assert isinstance(rule["evaluationTime"], float)
    only_recording = sonde.api("/api/v1/rules", {"type": "record"})["groups"]
    assert [r["name"] for g in only_recording for r in g["rules"]] == ["queue:depth:sum"]
    no_alerts = sonde.api("/api/v1/rules", {"exclude_alerts": "true"})["groups"]
    assert no_alerts[0]["rules"][0]["alerts"] == []

    # The recording rule's output and the ALERTS series are queryable.
    assert wait_for("the recorded series", lambda: sonde.vector("queue:depth:sum")) == {
        frozenset({"__name__": "queue:depth:sum", "queue": "orders"}.items()): 2500.0
    }
    alerts_series = sonde.vector('ALERTS{alertname="QueueTooDeep"}')
    assert frozenset({"__name__": "ALERTS", "alertname": "QueueTooDeep", "alertstate": "firing",
                      "severity": "page", **LABELS}.items()) in alerts_series

    # The condition clears: a resolved notification, and no alert left.
    push(sonde, "queue_depth", LABELS, 10)
    resolved = wait_for(
        "the resolved notification",
        lambda: [p for p in hook.received() if p["status"] == "resolved"],
        timeout=4,
    )[0]
    [alert] = resolved["alerts"]
    assert alert["status"] == "resolved"
    assert alert["labels"]["queue"] == "orders"
    assert RFC3339.match(alert["endsAt"]) and alert["endsAt"] != "0001-01-01T00:00:00Z"
    assert alerts(sonde, "QueueTooDeep") == []
    assert len([p for p in hook.received() if p["status"] == "firing"]) == 1, "firing was sent again"

    # The history holds every transition, newest first.
    history = sonde.api("/api/v1/alerts/history", {"rule": "QueueTooDeep"})["transitions"]
    assert [(t["from"], t["to"]) for t in history] == [
        ("firing", "resolved"),
        ("pending", "firing"),
        ("inactive", "pending"),
    ]
    assert history[2]["labels"]["queue"] == "orders"
    assert history[2]["value"] == "2.5e+03"
    assert RFC3339.match(history[0]["at"])

    sent = re.compile(r'^sonde_alert_notifications_sent_total\{kind="webhook",url="[^"]+"\} 2$', re.M)
    wait_for("two notifications counted", lambda: sent.search(sonde.get("/metrics/alerting").text))


def test_reload_keeps_states_adds_rules_and_refuses_bad_files(sonde_factory, webhook, tmp_path):
    hook = webhook()
    always = """
groups:
  - name: base
    rules:
      - alert: AlwaysOn
        expr: vector(1)
        labels: {severity: info}
"""
    write_rules(tmp_path, always)
    sonde = sonde_factory("--rule-files", f"{tmp_path}/*.yml", "--alert-webhooks", hook.url)
    first = wait_for("AlwaysOn firing", lambda: [a for a in alerts(sonde, "AlwaysOn") if a["state"] == "firing"])
    wait_for("its notification", hook.received)

    # A new rule appears; the unchanged one keeps its alert and state.
    write_rules(tmp_path, always + """      - record: answer
        expr: vector(42)
""")
    r = reload(sonde)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"groups": 1, "rules": 2}
    rules = rules_by_name(sonde)
    assert set(rules) == {"AlwaysOn", "answer"}
    after = [a for a in alerts(sonde, "AlwaysOn") if a["state"] == "firing"]
    assert after and after[0]["activeAt"] == first[0]["activeAt"]
    wait_for("the new recording rule's output", lambda: sonde.vector("answer"))

    # A bad file: the reload fails, says why, and the rules run on.
    write_rules(tmp_path, "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(\n",
                name="broken.yml")
    r = reload(sonde)
    assert r.status_code == 500
    assert r.json()["status"] == "error" and "could not parse expression" in r.json()["error"]
    data = sonde.api("/api/v1/rules")
    assert "broken.yml" in data["lastReloadError"]
    assert {r["name"] for g in file_groups(data) for r in g["rules"]} == {"AlwaysOn", "answer"}
    assert alerts(sonde, "AlwaysOn")[0]["activeAt"] == first[0]["activeAt"]
    r = sonde.http.post(f"{sonde.api_url}/api/v1/admin/reload_rules", timeout=30)
    assert r.status_code == 500

    # Fixed, and reloaded by SIGHUP this time.
    (tmp_path / "broken.yml").unlink()
    write_rules(tmp_path, "groups:\n  - name: extra\n    interval: 2s\n    rules:\n      - record: two\n        expr: vector(2)\n",
                name="extra.yml")
    sonde.proc.send_signal(signal.SIGHUP)
    data = wait_for(
        "the SIGHUP reload",
        lambda: (d := sonde.api("/api/v1/rules")) and "lastReloadError" not in d and len(file_groups(d)) == 2 and d,
    )
    assert {g["name"]: g["interval"] for g in file_groups(data)} == {"base": 1, "extra": 2}
    # Reloads keep the built-in anomaly rules, after the files' groups.
    assert data["groups"][-1]["name"] == BUILTIN_GROUP and len(data["groups"]) == 3
    assert alerts(sonde, "AlwaysOn")[0]["activeAt"] == first[0]["activeAt"]
    # Reloads never re-announced the alert that kept firing.
    assert len(hook.received()) == 1

    # A removed rule's firing alert is resolved for its receivers.
    (tmp_path / "rules.yml").unlink()
    assert reload(sonde).status_code == 200
    resolved = wait_for("the removed rule's resolution", lambda: [p for p in hook.received() if p["status"] == "resolved"])
    assert resolved[0]["alerts"][0]["labels"]["alertname"] == "AlwaysOn"
    assert alerts(sonde, "AlwaysOn") == []
    assert sonde.api("/api/v1/alerts/history", {"rule": "AlwaysOn", "limit": "1"})["transitions"][0]["to"] == "resolved"


def test_firing_alert_survives_a_restart_and_a_crash(sonde_factory, tmp_path):
    write_rules(tmp_path, """
groups:
  - name: workers
    rules:
      - alert: JobsStuck
        expr: stuck_jobs > 0
        for: 5s
""")
    sonde = sonde_factory("--rule-files", f"{tmp_path}/*.yml")
    push(sonde, "stuck_jobs", {"job": "worker"}, 3)
    firing = wait_for(
        "the firing alert",
        lambda: [a for a in alerts(sonde, "JobsStuck") if a["state"] == "firing"],
        timeout=5 + 3,
    )
    active_at = firing[0]["activeAt"]
    # ALERTS_FOR_STATE holds activeAt in unix seconds, as Prometheus writes it.
    [(labels, since)] = sonde.vector('ALERTS_FOR_STATE{alertname="JobsStuck"}').items()
    assert dict(labels) == {"__name__": "ALERTS_FOR_STATE", "alertname": "JobsStuck", "job": "worker"}
    assert abs(since - datetime.fromisoformat(active_at).timestamp()) < 0.0015, (since, active_at)

    for crash in (False, True):
        sonde.restart(crash=crash)
        # The first evaluation after the restart finds it firing, with the
        # activeAt it had: its `for` is not served again.
        seen = wait_for("the alert after the restart", lambda: alerts(sonde, "JobsStuck"), timeout=5, interval=0.02)
        assert [(a["state"], a["activeAt"]) for a in seen] == [("firing", active_at)], f"crash={crash}"
        history = sonde.api("/api/v1/alerts/history", {"rule": "JobsStuck"})["transitions"]
        assert [(t["from"], t["to"]) for t in history] == [("inactive", "firing")], f"crash={crash}"


class Alertmanager(LoggedProcess):
    """The real Debian `prometheus-alertmanager`, clustering off."""

    name = "alertmanager"

    def __init__(self, config_yaml: str) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sonde-test-alertmanager-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.tmp / "alertmanager.yml").write_text(config_yaml)

    def start(self, timeout: float = 30.0) -> "Alertmanager":
        argv = [
            ALERTMANAGER_BIN,
            f"--config.file={self.tmp / 'alertmanager.yml'}",
            f"--storage.path={self.tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=info",
        ]
        self._spawn(argv, self.tmp / "alertmanager.log")
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"alertmanager exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"alertmanager was not ready within {timeout}s:\n{self.log_text()}")
            time.sleep(0.1)

    def alerts(self, alertname: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_real_alertmanager_receives_routes_and_resolves_the_alert(sonde_factory, webhook, tmp_path):
    if not Path(ALERTMANAGER_BIN).exists():
        pytest.fail(f"{ALERTMANAGER_BIN} is missing: install the Debian package `prometheus-alertmanager` (scripts/test does)")
    am_hook = webhook()
    sonde_hook = webhook()
    am = Alertmanager(f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {am_hook.url}
        send_resolved: true
""").start()
    try:
        write_rules(tmp_path, RULES)
        sonde = sonde_factory(
            "--rule-files", f"{tmp_path}/*.yml",
            "--alertmanager-urls", am.url,
            "--alert-webhooks", sonde_hook.url,
            "--alert-resend-delay", "2s",
        )
        push(sonde, "queue_depth", LABELS, 2500)
        [got] = wait_for("the alert in Alertmanager", lambda: am.alerts("QueueTooDeep"), timeout=10)
        assert got["labels"] == {"alertname": "QueueTooDeep", "severity": "page", **LABELS}
        assert got["annotations"]["summary"] == "Queue orders on mq-1 holds 2500 items"
        assert got["status"]["state"] == "active"
        assert got["generatorURL"].startswith(f"{sonde.api_url}/graph?")
        assert got["receivers"] == [{"name": "hook"}]

        # Alertmanager routed it to its own webhook; Sonde's webhook payload
        # has the very same shape.
        am_payload = wait_for("Alertmanager's notification", am_hook.received, timeout=10)[0]
        ours = wait_for("Sonde's notification", sonde_hook.received)[0]
        assert set(ours) == set(am_payload), (sorted(ours), sorted(am_payload))
        assert set(ours["alerts"][0]) == set(am_payload["alerts"][0])
        assert am_payload["status"] == "firing"
        assert am_payload["alerts"][0]["labels"] == ours["alerts"][0]["labels"]
        assert am_payload["alerts"][0]["fingerprint"] == ours["alerts"][0]["fingerprint"]
        assert am_payload["alerts"][0]["startsAt"] == ours["alerts"][0]["startsAt"]

        # Re-sent while firing (resend delay 2s), so Alertmanager keeps it
        # active; then resolved once the condition clears.
        time.sleep(3)
        assert am.alerts("QueueTooDeep")[0]["status"]["state"] == "active"
        push(sonde, "queue_depth", LABELS, 1)
        wait_for("the alert to resolve in Alertmanager", lambda: am.alerts("QueueTooDeep") == [], timeout=10)
        resolved = wait_for(
            "Alertmanager's resolved notification",
            lambda: [p for p in am_hook.received() if p["status"] == "resolved"],
            timeout=10,
        )[0]
        assert resolved["alerts"][0]["labels"]["queue"] == "orders"
        assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    finally:
        am.cleanup()
