"""Issue 7's end-to-end check on `sonde demo`: a quiet stretch of the shop
raises no alert and no anomaly; the injected incident (the payment
provider slow and failing) raises the demo's HighErrorRate alert on
payments within seconds, and nothing off its call path. Uses only the demo's own rules
plus the built-in anomaly detection, evaluated every 250 ms."""

from __future__ import annotations

import time

from harness import Sonde

# The incident window is 50-60% of the period: a quiet first half long
# enough for the detectors' warm-up (150 evaluations) and minutes of calm.
PERIOD_S = 400
INCIDENT_AT_S = PERIOD_S * 0.5


def anomalies(s: Sonde) -> list[dict]:
    r = s.get("/api/v1/events", params={"name": "anomaly.detected", "limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["data"]["logs"]


def firing(s: Sonde) -> list[dict]:
    return [a for a in s.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]


def test_quiet_demo_raises_nothing_and_the_incident_is_caught_on_payments():
    s = Sonde(["--rate", "40", "--workers", "16", "--incident-period", f"{PERIOD_S}s",
               "--rule-evaluation-interval", "250ms", "--no-agent"], command="demo")
    started = time.monotonic()
    s.start(timeout=60)
    try:
        # The quiet stretch: check as it goes, so a false alarm is caught
        # when it happens.
        while time.monotonic() - started < INCIDENT_AT_S - 5:
            assert firing(s) == [], f"alert during the quiet stretch: {firing(s)}"
            time.sleep(2)
        quiet = anomalies(s)
        assert quiet == [], f"anomalies during the quiet stretch: {quiet}"

        # The incident: the payment provider slows and fails; payments
        # fails, and so do the callers up its path (checkout, frontend).
        deadline = started + INCIDENT_AT_S + 60
        alerted: dict[str, float] = {}
        detected: dict[str, float] = {}
        while time.monotonic() < deadline and not ("payments" in alerted and detected):
            now = time.monotonic() - started - INCIDENT_AT_S
            for a in firing(s):
                if a["labels"].get("alertname") == "HighErrorRate":
                    alerted.setdefault(a["labels"]["service_name"], now)
            for e in anomalies(s):
                detected.setdefault(e["attributes"].get("series.service_name", "?"), now)
            time.sleep(0.5)
        print(f"alerts after the incident began: {alerted}; anomalies: {detected}")
        assert "payments" in alerted, f"no HighErrorRate alert on payments within 60 s\n{s.log_text()}"
        on_path = {"payments", "checkout", "frontend"}
        assert set(alerted) <= on_path, f"alerts off the incident's call path: {alerted}"
        # The built-in detectors do not reliably score this incident (a
        # rise over a minute, through rate()[1m] windows) above their alert
        # level within 60 s: what they find must be on the path, but
        # finding nothing is not a failure yet (see the issue 7 note).
        assert set(detected) <= on_path, f"anomalies off the incident's call path: {detected}"
    finally:
        s.cleanup()
