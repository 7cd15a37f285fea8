"""Runtime collection policies (docs/policies.md): the server side, through
its HTTP API, its watch stream and the `sonde policy` command."""

from __future__ import annotations

import json
import subprocess
import time

from harness import SseStream


def put(sonde, pid: str, body: dict):
    return sonde.http.put(f"{sonde.api_url}/api/v1/policies/{pid}", data=json.dumps(body), timeout=5)


def effective(sonde, service: str, host: str) -> dict:
    r = sonde.get("/api/v1/policies/effective", params={"service": service, "host": host})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def next_policy(stream: SseStream, timeout: float = 1.5) -> dict:
    ev = stream.next_event(timeout)
    assert ev is not None, "no policy event within the time limit"
    assert ev[0] == "policy", ev
    return json.loads(ev[1])


def test_policies_merge_by_scope_and_reject_bad_input(sonde):
    assert put(sonde, "base", {"trace_sampling_ratio": 0.5, "metric_interval": "10s"}).status_code == 200
    assert put(sonde, "api", {"scope": {"kind": "service", "name": "api"}, "trace_sampling_ratio": 0.1}).status_code == 200
    assert put(sonde, "h1", {"scope": {"kind": "host", "name": "h1"}, "min_log_severity": 13,
                             "collectors": ["cpu", "memory"]}).status_code == 200

    e = effective(sonde, "api", "h1")
    assert e["trace_sampling_ratio"] == 0.1
    assert e["metric_interval_ms"] == 10000
    assert e["min_log_severity"] == 13
    assert e["collectors"] == ["cpu", "memory"]
    other = effective(sonde, "web", "h2")
    assert other["trace_sampling_ratio"] == 0.5 and other["min_log_severity"] is None

    listed = {p["id"]: p for p in sonde.get("/api/v1/policies").json()["data"]}
    assert set(listed) == {"base", "api", "h1"}
    assert listed["api"]["scope"] == {"kind": "service", "name": "api"}

    for body, fragment in [
        ({"trace_sampling_ratio": 1.5}, "0 to 1"),
        ({"metric_interval": "soon"}, "duration"),
        ({"collectors": ["gpu"]}, "unknown collector"),
        ({"scope": {"kind": "planet", "name": "x"}}, "scope kind"),
        ({"sample": 1}, "unknown policy field"),
    ]:
        r = put(sonde, "bad", body)
        assert r.status_code == 400, (body, r.text)
        assert fragment in r.json()["error"], (body, r.text)
    r = sonde.http.put(f"{sonde.api_url}/api/v1/policies/bad", data="{not json", timeout=5)
    assert r.status_code == 400

    assert sonde.http.delete(f"{sonde.api_url}/api/v1/policies/api", timeout=5).status_code == 200
    assert sonde.http.delete(f"{sonde.api_url}/api/v1/policies/api", timeout=5).status_code == 404
    assert effective(sonde, "api", "h9")["trace_sampling_ratio"] == 0.5


def test_watchers_get_changes_within_a_second_and_ttls_revert(sonde):
    stream = SseStream(sonde.api_url, "/api/v1/policies/watch?service=api&host=h1&client_id=c-1&kind=sdk")
    try:
        assert stream.status == 200
        first = next_policy(stream)
        assert first["trace_sampling_ratio"] is None

        clients = sonde.get("/api/v1/clients").json()["data"]
        assert [c["connected"] for c in clients if c["client_id"] == "c-1"] == [True]

        t = time.monotonic()
        assert put(sonde, "p", {"scope": {"kind": "service", "name": "api"}, "trace_sampling_ratio": 0.2,
                                "ttl": "2s"}).status_code == 200
        got = next_policy(stream)
        assert time.monotonic() - t < 1.0
        assert got["trace_sampling_ratio"] == 0.2 and got["version"] > first["version"]

        # A policy for another service changes nothing for this client.
        assert put(sonde, "q", {"scope": {"kind": "service", "name": "web"}, "min_log_severity": 17}).status_code == 200
        # The TTL runs out: the client is told to go back to its defaults.
        reverted = next_policy(stream, timeout=4.0)
        assert reverted["trace_sampling_ratio"] is None
        assert reverted["min_log_severity"] is None
        assert "p" not in {p["id"] for p in sonde.get("/api/v1/policies").json()["data"]}
    finally:
        stream.close()

    status = {
        "client_id": "c-1", "kind": "sdk", "service": "api", "host": "h1", "version": "0.1.0",
        "policy_version": reverted["version"],
        "effective": {"trace_sampling_ratio": None, "metric_interval_ms": None, "min_log_severity": None,
                      "collectors": None},
        "health": {"healthy": True, "exported_batches": 12, "dropped_batches": 0, "last_error": None},
    }
    r = sonde.http.post(f"{sonde.api_url}/api/v1/clients/status", data=json.dumps(status), timeout=5)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 3
    while True:
        c = {c["client_id"]: c for c in sonde.get("/api/v1/clients").json()["data"]}["c-1"]
        if not c["connected"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert c["connected"] is False, "the closed stream still counts as connected"
    assert c["health"]["exported_batches"] == 12 and c["policy_version"] == reverted["version"]
    r = sonde.http.post(f"{sonde.api_url}/api/v1/clients/status", data=json.dumps({"kind": "sdk"}), timeout=5)
    assert r.status_code == 400 and "client_id" in r.json()["error"]


def test_policies_survive_restart_and_the_cli_sets_them(sonde):
    env_server = ["--server", sonde.api_url]
    out = subprocess.run(
        [sonde.binary, "policy", "set", "quiet", "--scope", "host:db-1", "--min-severity", "warn",
         "--interval", "5s", "--collectors", "cpu,disk", *env_server],
        capture_output=True, text=True, timeout=10,
    )
    assert out.returncode == 0, out.stderr
    assert "quiet" in out.stdout and "host:db-1" in out.stdout
    bad = subprocess.run([sonde.binary, "policy", "set", "x", "--sampling", "7", *env_server],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "0 to 1" in bad.stderr

    sonde.restart()
    e = effective(sonde, "any", "db-1")
    assert e["min_log_severity"] == 13 and e["metric_interval_ms"] == 5000 and e["collectors"] == ["cpu", "disk"]
    listed = subprocess.run([sonde.binary, "policy", "list", *env_server], capture_output=True, text=True, timeout=10)
    assert "quiet" in listed.stdout and "min-severity=13" in listed.stdout
    gone = subprocess.run([sonde.binary, "policy", "delete", "quiet", *env_server], capture_output=True, text=True,
                          timeout=10)
    assert gone.returncode == 0, gone.stderr
    assert effective(sonde, "any", "db-1")["min_log_severity"] is None
