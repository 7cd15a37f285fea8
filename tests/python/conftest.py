"""Fixtures that run a real `sonde serve` for the tests in this folder.

The server binary comes from `$SONDE_BIN` (default: the debug build). Each
server gets free loopback ports and a fresh data directory; its log is kept
in a file and attached to the report of every test that fails while it runs.
"""

from __future__ import annotations

import pytest

from harness import ACTIVE, Sonde


# -- fixtures -------------------------------------------------------------


@pytest.fixture
def sonde_factory():
    """Starts servers with extra flags: `sonde_factory("--retention", "0")`."""
    started: list[Sonde] = []

    def start(*extra_args: str) -> Sonde:
        s = Sonde(extra_args)
        started.append(s)
        return s.start()

    yield start
    problems = []
    for s in started:
        if not s.alive():
            problems.append(f"sonde exited during the test with code {s.proc.returncode}:\n{s.log_text()}")
            s.cleanup()
            continue
        log = s.log_text
        code = s.stop()
        if code != 0:
            problems.append(f"sonde did not shut down cleanly on SIGTERM (exit code {code}):\n{log()}")
        s.cleanup()
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def sonde(sonde_factory) -> Sonde:
    """A fresh `sonde serve` with default settings."""
    return sonde_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for p in list(ACTIVE):
            status = "running" if p.alive() else f"exited with {p.proc.returncode}"
            report.sections.append((f"{p.name} log ({status}, {p.log_path})", p.log_text()))
