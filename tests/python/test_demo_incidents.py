"""Issue 7's end-to-end check on `sonde demo`: a quiet stretch of the shop
raises no alert and no anomaly; the first injected incident (the payment
provider slow and failing) raises the demo's HighErrorRate alert on
payments within seconds and the built-in detectors find it on payments;
the second (the database slow, no errors) is found by the detectors on
catalog; nothing is raised off each incident's call path. Uses only the
demo's own rules plus the built-in anomaly detection, evaluated every
250 ms. Incidents are timed from the demo's own `demo.incident.started`
events, not from the test's clock, so a slow start or a loaded machine
does not shift what is asserted."""

from __future__ import annotations

import time

from harness import Sonde

# The payments incident is 50-60% of the period, the database one 80-83%:
# a quiet first half long enough for the detectors' warm-up (150 one-second
# steps) and minutes of calm.
PERIOD_S = 400
PAYMENTS_AT_S = PERIOD_S * 0.5
DB_AT_S = PERIOD_S * 0.8
PAYMENTS_PATH = {"payments", "checkout", "frontend"}
# Catalog reads products from the database, checkout writes orders to it,
# and frontend calls both.
DB_PATH = {"catalog", "checkout", "frontend"}


def anomalies(s: Sonde) -> list[dict]:
    r = s.get("/api/v1/events", params={"name": "anomaly.detected", "limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["data"]["logs"]


def found_since(s: Sonde, since: float, slack: float) -> dict[str, float]:
    """Service -> seconds after `since` (Unix seconds) of its first anomaly,
    counting those up to `slack` seconds before it (a margin for the
    detectors' own timestamps, the evaluation's, against the event's)."""
    out: dict[str, float] = {}
    for e in anomalies(s):
        at = int(e["timeUnixNano"]) / 1e9 - since
        if at >= -slack:
            svc = e["attributes"].get("series.service_name", "?")
            out[svc] = min(at, out.get(svc, at))
    return out


def incident_start(s: Sonde, name: str) -> float | None:
    """When the demo says the incident `name` began (Unix seconds)."""
    r = s.get("/api/v1/events", params={"name": "demo.incident.started", "limit": 100})
    assert r.status_code == 200, r.text
    times = [int(e["timeUnixNano"]) / 1e9 for e in r.json()["data"]["logs"]
             if e["attributes"].get("demo.incident") == name]
    return min(times) if times else None


def firing(s: Sonde) -> list[dict]:
    return [a for a in s.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]


def test_quiet_demo_raises_nothing_and_the_incidents_are_caught_on_their_services():
    s = Sonde(["--rate", "40", "--workers", "16", "--incident-period", f"{PERIOD_S}s",
               "--rule-evaluation-interval", "250ms", "--no-agent"], command="demo")
    started = time.monotonic()
    s.start(timeout=60)
    try:
        # The quiet stretch, until the demo says the payments incident
        # began: check as it goes, so a false alarm is caught when it
        # happens.
        pay_t = None
        while pay_t is None:
            assert time.monotonic() - started < PAYMENTS_AT_S + 60, "the demo announced no incident"
            assert firing(s) == [], f"alert during the quiet stretch: {firing(s)}"
            pay_t = incident_start(s, "payment-provider")
            time.sleep(1)
        quiet = [e for e in anomalies(s) if int(e["timeUnixNano"]) / 1e9 < pay_t - 2]
        assert quiet == [], f"anomalies during the quiet stretch: {quiet}"

        # The payment provider slows and fails; payments fails, and so do
        # the callers up its path (checkout, frontend).
        deadline = time.monotonic() + 60
        alerted: dict[str, float] = {}
        detected: dict[str, float] = {}
        while time.monotonic() < deadline and not ("payments" in alerted and "payments" in detected):
            now = time.time() - pay_t
            for a in firing(s):
                if a["labels"].get("alertname") == "HighErrorRate":
                    alerted.setdefault(a["labels"]["service_name"], now)
            detected = found_since(s, pay_t, 5)
            time.sleep(0.5)
        print(f"payments incident: alerts {alerted}; anomalies (s after it began) {detected}")
        assert "payments" in alerted, f"no HighErrorRate alert on payments within 60 s\n{s.log_text()}"
        assert set(alerted) <= PAYMENTS_PATH, f"alerts off the incident's call path: {alerted}"
        assert "payments" in detected, f"no anomaly on payments within 60 s: {detected}"

        # The database slows for 12 s, with no errors: only the detectors
        # can see it, on catalog's latency.
        db_t = None
        while db_t is None:
            assert time.time() - pay_t < DB_AT_S - PAYMENTS_AT_S + 60, "no database incident announced"
            db_t = incident_start(s, "database")
            time.sleep(0.5)
        deadline = time.monotonic() + 40
        db: dict[str, float] = {}
        while time.monotonic() < deadline and "catalog" not in db:
            db = found_since(s, db_t, 2)
            time.sleep(0.5)
        print(f"database incident: anomalies (s after it began) {db}")
        assert "catalog" in db, f"no anomaly on catalog within 40 s: {db}"
        assert set(db) <= DB_PATH, f"anomalies off the database's call path: {db}"

        # Between the incidents, only the payments path (as it recovers).
        between = {svc for svc, at in found_since(s, pay_t, 5).items() if at < db_t - pay_t - 2}
        assert between <= PAYMENTS_PATH, f"anomalies off the payments path: {between}"
    finally:
        s.cleanup()
