"""The service never sends usage telemetry: Haystack's is off wherever the service's code runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_haystack_telemetry_is_off_when_the_service_is_imported():
    # A fresh interpreter: Haystack reads the switch once, when it is first imported.
    env = {k: v for k, v in os.environ.items() if k != "HAYSTACK_TELEMETRY_ENABLED"}
    probe = "import workload.service.app, haystack.telemetry._telemetry as t; print(t.telemetry is None)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True", out.stdout
