"""Issue 7's end-to-end check on `sonde demo`: a quiet stretch of the shop
raises no alert and no anomaly; the first injected incident (the payment
provider slow and failing) raises the demo's HighErrorRate alert on
payments within seconds and the built-in detectors find it on payments;
the second (the database slow, no errors) is found by the detectors on
catalog; nothing is raised off each incident's call path. Uses only the
demo's own rules plus the built-in anomaly detection, evaluated every
250 ms."""

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
    """Service -> seconds after `since` (wall clock) of its first anomaly,
    counting those up to `slack` seconds before it (a margin: the demo's
    incident clock starts when the demo does, a little after `wall`)."""
    out: dict[str, float] = {}
    for e in anomalies(s):
        at = int(e["timeUnixNano"]) / 1e9 - since
        if at >= -slack:
            svc = e["attributes"].get("series.service_name", "?")
            out[svc] = min(at, out.get(svc, at))
    return out


def firing(s: Sonde) -> list[dict]:
    return [a for a in s.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]


def test_quiet_demo_raises_nothing_and_the_incidents_are_caught_on_their_services():
    s = Sonde(["--rate", "40", "--workers", "16", "--incident-period", f"{PERIOD_S}s",
               "--rule-evaluation-interval", "250ms", "--no-agent"], command="demo")
    started, wall = time.monotonic(), time.time()
    s.start(timeout=60)
    try:
        # The quiet stretch: check as it goes, so a false alarm is caught
        # when it happens.
        while time.monotonic() - started < PAYMENTS_AT_S - 5:
            assert firing(s) == [], f"alert during the quiet stretch: {firing(s)}"
            time.sleep(2)
        quiet = anomalies(s)
        assert quiet == [], f"anomalies during the quiet stretch: {quiet}"

        # The payment provider slows and fails; payments fails, and so do
        # the callers up its path (checkout, frontend).
        deadline = started + PAYMENTS_AT_S + 60
        alerted: dict[str, float] = {}
        detected: dict[str, float] = {}
        while time.monotonic() < deadline and not ("payments" in alerted and "payments" in detected):
            now = time.monotonic() - started - PAYMENTS_AT_S
            for a in firing(s):
                if a["labels"].get("alertname") == "HighErrorRate":
                    alerted.setdefault(a["labels"]["service_name"], now)
            detected = found_since(s, wall + PAYMENTS_AT_S, 5)
            time.sleep(0.5)
        print(f"payments incident: alerts {alerted}; anomalies (s after it began) {detected}")
        assert "payments" in alerted, f"no HighErrorRate alert on payments within 60 s\n{s.log_text()}"
        assert set(alerted) <= PAYMENTS_PATH, f"alerts off the incident's call path: {alerted}"
        assert "payments" in detected, f"no anomaly on payments within 60 s: {detected}"

        # The database slows for 12 s, with no errors: only the detectors
        # can see it, on catalog's latency.
        time.sleep(max(0.0, started + DB_AT_S - time.monotonic()))
        deadline = started + DB_AT_S + 40
        db: dict[str, float] = {}
        while time.monotonic() < deadline and "catalog" not in db:
            db = found_since(s, wall + DB_AT_S, 2)
            time.sleep(0.5)
        print(f"database incident: anomalies (s after it began) {db}")
        assert "catalog" in db, f"no anomaly on catalog within 40 s: {db}"
        assert set(db) <= DB_PATH, f"anomalies off the database's call path: {db}"

        # Between the incidents, only the payments path (as it recovers).
        between = {svc for svc, at in found_since(s, wall + PAYMENTS_AT_S, 5).items()
                   if at < DB_AT_S - PAYMENTS_AT_S - 2}
        assert between <= PAYMENTS_PATH, f"anomalies off the payments path: {between}"
    finally:
        s.cleanup()
