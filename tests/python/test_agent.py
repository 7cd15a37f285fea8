"""`sonde agent` against a real `sonde serve`: the host metrics it sends must
agree with what psutil reads from the same kernel at the same moment.

A sampler thread reads psutil every few milliseconds with timestamps; each
comparison waits for a fresh agent tick, takes the tick's timestamp from
PromQL's `timestamp()`, and compares the tick's values with the psutil
readings taken just before and just after it. Tolerances:

- MemTotal exactly; the memory states add up to it exactly;
- MemAvailable within 5%;
- cumulative CPU seconds per CPU and mode within 2% + 1 s;
- `lo` bytes between the readings just before and just after the tick
  (traffic in between is the margin);
- the size of / exactly (statvfs), its states adding up to it;
- the 1-minute load average within 0.5;
- disk read bytes within 1% (and between the bracketing readings).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness import LoggedProcess

SONDE_BIN = os.environ.get("SONDE_BIN") or str(Path(__file__).resolve().parents[2] / "target" / "debug" / "sonde")
HOSTNAME = Path("/proc/sys/kernel/hostname").read_text().strip()

# psutil's names of /proc/stat's columns, by the agent's state names.
CPU_STATES = {
    "user": "user",
    "nice": "nice",
    "system": "system",
    "idle": "idle",
    "wait": "iowait",
    "interrupt": "irq",
    "softirq": "softirq",
    "steal": "steal",
}


class Agent(LoggedProcess):
    """A running `sonde agent`."""

    name = "sonde-agent"

    def __init__(self, tmp: Path, *args: str) -> None:
        super().__init__()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SONDE_")}
        env["NO_COLOR"] = "1"
        self._spawn([SONDE_BIN, "agent", *args], tmp / "agent.log", env=env)


class Sampler:
    """Reads psutil in a loop: [(t_before, t_after, readings)]."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[tuple[float, float, dict]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stopping.is_set():
            t0 = time.time()
            r = {
                "cpu": psutil.cpu_times(percpu=True),
                "net": psutil.net_io_counters(pernic=True),
                "disk": psutil.disk_io_counters(perdisk=True),
            }
            t1 = time.time()
            with self.lock:
                self.samples.append((t0, t1, r))
                if len(self.samples) > 2000:
                    del self.samples[:1000]
            time.sleep(self.period)

    def around(self, t: float, after_margin: float = 0.05, timeout: float = 5.0) -> tuple[dict, dict]:
        """The last reading finished before `t` and the first one started
        after `t + after_margin` (the agent reads its files just after its
        timestamp)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                before = [r for (t0, t1, r) in self.samples if t1 <= t]
                after = [r for (t0, t1, r) in self.samples if t0 >= t + after_margin]
            if before and after:
                return before[-1], after[0]
            assert time.monotonic() < deadline, f"no psutil readings around {t}"
            time.sleep(0.02)


def fresh_tick(sonde, expr: str = "system_memory_limit_bytes", timeout: float = 20.0) -> float:
    """Waits for a sample of `expr` newer than the first one seen (so the
    agent has ticked at least twice) and returns its timestamp (s)."""
    def ts() -> float | None:
        vec = sonde.vector(f"max(timestamp({expr}))")
        return next(iter(vec.values())) if vec else None

    deadline = time.monotonic() + timeout
    while (first := ts()) is None:
        assert time.monotonic() < deadline, f"no sample of {expr} within {timeout}s"
        time.sleep(0.05)
    while True:
        t = ts()
        if t > first:
            return t
        assert time.monotonic() < deadline, f"no fresh sample of {expr} within {timeout}s"
        time.sleep(0.05)


def by(vec: dict, *labels: str) -> dict:
    """{(label values...): value} of a vector."""
    out = {}
    for key, v in vec.items():
        d = dict(key)
        out[tuple(d.get(label) for label in labels)] = v
    return out


@pytest.fixture
def agent(sonde, tmp_path):
    a = Agent(tmp_path, "--interval", "1s", "--endpoint", sonde.otlp_http_url, "--api", "none")
    yield a
    alive = a.alive()
    code = a.stop()
    assert alive, f"the agent exited during the test:\n{a.log_text()}"
    assert code == 0, f"the agent did not exit cleanly on SIGTERM (code {code}):\n{a.log_text()}"


def test_agent_matches_psutil(sonde, agent):
    with Sampler() as sampler:
        t = fresh_tick(sonde)
        at = lambda expr: sonde.vector(expr, time=t)  # noqa: E731

        # Identity: job and instance from the resource, the rest on target_info.
        limit = at("system_memory_limit_bytes")
        assert len(limit) == 1, limit
        labels = dict(next(iter(limit)))
        assert (labels["job"], labels["instance"], labels["otel_scope_name"]) == ("sonde-agent", HOSTNAME, "sonde.agent")
        info = dict(next(iter(at("target_info"))))
        assert info["host_name"] == HOSTNAME and info["os_type"] == "linux", info
        assert info["host_arch"] in ("amd64", "arm64"), info

        # Memory.
        vm = psutil.virtual_memory()
        assert next(iter(limit.values())) == vm.total, "MemTotal exactly"
        usage = by(at("system_memory_usage_bytes"), "state")
        assert set(usage) == {("used",), ("free",), ("buffered",), ("cached",)}
        assert sum(usage.values()) == vm.total, f"the states add up to the total: {usage}"
        available = sonde.value("system_linux_memory_available_bytes", time=t)
        assert abs(available - vm.available) <= 0.05 * vm.available, (available, vm.available)

        # CPU: every CPU and mode.
        before, after = sampler.around(t)
        cpu = by(at("system_cpu_time_seconds_total"), "cpu", "state")
        assert len(cpu) == len(before["cpu"]) * len(CPU_STATES), sorted(cpu)
        for (name, state), v in cpu.items():
            i = int(name.removeprefix("cpu"))
            field = CPU_STATES[state]
            lo, hi = getattr(before["cpu"][i], field), getattr(after["cpu"][i], field)
            tol = 0.02 * hi + 1.0
            assert lo - tol <= v <= hi + tol, f"{name} {state}: agent {v}, psutil {lo}..{hi}"

        # Network: loopback bytes, bracketed by the readings around the tick.
        net = by(at("system_network_io_bytes_total"), "device", "direction")
        for direction, field in [("receive", "bytes_recv"), ("transmit", "bytes_sent")]:
            v = net[("lo", direction)]
            lo, hi = getattr(before["net"]["lo"], field), getattr(after["net"]["lo"], field)
            assert lo <= v <= hi, f"lo {direction}: agent {v}, psutil {lo}..{hi} (traffic in between)"

        # Disks: read bytes of every disk reported.
        disk = by(at("system_disk_io_bytes_total"), "device", "direction")
        assert disk, "no disk reported"
        for (device, direction), v in disk.items():
            if direction != "read":
                continue
            lo, hi = before["disk"][device].read_bytes, after["disk"][device].read_bytes
            assert lo <= v <= hi or abs(v - hi) <= 0.01 * hi, f"{device} read: agent {v}, psutil {lo}..{hi}"

        # The root file system: size exactly, states adding up to it.
        du = psutil.disk_usage("/")
        assert sonde.value("system_filesystem_limit_bytes", time=t, mountpoint="/") == du.total
        fs = by(at('system_filesystem_usage_bytes{mountpoint="/"}'), "state")
        assert sum(fs.values()) == du.total, fs
        assert abs(fs[("free",)] - du.free) <= 0.01 * du.total, (fs, du)

        # Load average.
        load1 = sonde.value("system_cpu_load_average_1m", time=t)
        assert abs(load1 - psutil.getloadavg()[0]) <= 0.5, (load1, psutil.getloadavg())

        # Utilization: a share per state, adding up to 1 (from the 2nd tick on).
        util = at("system_cpu_utilization_ratio")
        assert len(util) == len(CPU_STATES) and abs(sum(util.values()) - 1) < 1e-6, util

    # Roughly one tick a second.
    n = sonde.value("count_over_time(system_memory_limit_bytes[10s])")
    assert 1 <= n <= 11, n


def test_once_prints_the_metrics(sonde):
    r = subprocess.run([SONDE_BIN, "agent", "--once", "--top-processes", "3"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    names = {line.split("{")[0].split(" ")[0] for line in r.stdout.splitlines() if not line.startswith("#")}
    expected = {
        "system.cpu.time", "system.cpu.logical.count", "system.cpu.load_average.1m",
        "system.cpu.load_average.5m", "system.cpu.load_average.15m", "system.memory.usage",
        "system.memory.limit", "system.linux.memory.available", "system.filesystem.usage",
        "system.filesystem.limit", "system.filesystem.inodes.usage", "system.network.io",
        "system.network.packets", "system.network.errors", "system.network.dropped",
        "process.cpu.time", "process.memory.usage",
    }
    assert expected <= names, expected - names
    assert f"# resource host.name={HOSTNAME}" in r.stdout
    total = next(line for line in r.stdout.splitlines() if line.startswith("system.memory.limit "))
    assert int(total.split()[1]) == psutil.virtual_memory().total


def test_bad_flags_fail_with_a_message():
    r = subprocess.run([SONDE_BIN, "agent", "--collectors", "cpu,gpu"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert 'unknown collector "gpu"' in r.stderr, r.stderr


def last_timestamp(sonde, expr: str) -> float | None:
    vec = sonde.vector(f"max(timestamp({expr}))")
    return next(iter(vec.values())) if vec else None


def wait_until(what: str, check, timeout: float = 10.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(every)


def test_agent_follows_policies_without_restart(sonde, tmp_path):
    a = Agent(tmp_path, "--interval", "5s", "--endpoint", sonde.otlp_http_url, "--api", sonde.api_url)
    try:
        def me():
            clients = sonde.api("/api/v1/clients")
            mine = [c for c in clients if c.get("kind") == "agent" and c.get("host") == HOSTNAME]
            return mine[0] if mine and mine[0].get("connected") else None

        client = wait_until("the agent subscribes to its policies", me)
        assert client.get("service") == "sonde-agent", client
        wait_until("a first tick", lambda: last_timestamp(sonde, "system_cpu_time_seconds_total"))

        # A host policy: memory and load only, every 500 ms.
        r = sonde.http.put(
            f"{sonde.api_url}/api/v1/policies/agent-fast",
            json={"scope": {"kind": "host", "name": HOSTNAME}, "metric_interval": "500ms",
                  "collectors": ["memory", "load"]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        put_at = time.time()
        # Applied within a second: a memory sample newer than the PUT comes
        # before the 5 s tick would have.
        wait_until("a tick at the new interval",
                   lambda: (last_timestamp(sonde, "system_memory_limit_bytes") or 0) > put_at, timeout=1.5)
        time.sleep(2.5)
        ts = [t for t, _ in next(iter(sonde.matrix("system_memory_limit_bytes[2s]").values()))]
        assert len(ts) >= 3, f"expected ticks every 500ms, got {ts}"
        cpu_last = last_timestamp(sonde, "system_cpu_time_seconds_total")
        assert cpu_last <= put_at + 1.0, "cpu was still collected after the policy disabled it"

        # The status reports what was applied, and the sink's health.
        def applied():
            c = me()
            eff = (c or {}).get("effective") or {}
            return c if eff.get("collectors") == ["memory", "load"] and eff.get("metric_interval_ms") == 500 else None

        status = wait_until("the applied policy in the agent's status", applied, timeout=12)
        assert status["health"]["exported_batches"] > 0, status

        # Deleting the policy brings back the configured defaults.
        assert sonde.http.delete(f"{sonde.api_url}/api/v1/policies/agent-fast", timeout=10).status_code == 200
        deleted_at = time.time()
        wait_until("cpu collected again after the policy was deleted",
                   lambda: (last_timestamp(sonde, "system_cpu_time_seconds_total") or 0) > deleted_at, timeout=7)
    finally:
        code = a.stop()
        assert code == 0, f"the agent did not exit cleanly on SIGTERM (code {code}):\n{a.log_text()}"
