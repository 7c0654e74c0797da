"""The service never sends usage telemetry: Haystack's is off wherever the service's code runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = ("import workload.service.app, haystack.telemetry._telemetry as t, threading; "
         "print(t.telemetry is None, [th.name for th in threading.enumerate()])")


def run_probe(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_haystack_telemetry_is_off_when_the_service_is_imported():
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"}
    printed = run_probe(env)
    assert printed.startswith("True"), printed

