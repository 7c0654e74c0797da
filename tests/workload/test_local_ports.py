"""Ports the local stack hands to servers that bind them later."""

from __future__ import annotations

import socket

import pytest

from workload.errors import StepError
from workload.local import processes
from workload.local.processes import LOWEST_FREE_PORT, ephemeral_ports, free_port, port_free


def test_a_free_port_is_outside_the_range_the_os_hands_out():
    low, high = ephemeral_ports()
    ports = {free_port() for _ in range(50)}
    assert all(LOWEST_FREE_PORT <= p <= 65535 and not low <= p <= high for p in ports)
    assert len(ports) > 40  # drawn at random, so parallel callers rarely pick the same one
    assert all(port_free(p) for p in ports)


def test_a_port_in_use_or_to_avoid_is_never_returned(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        # Only the held port and one to avoid are offered, then one free port.
        offers = iter([taken, 40000, taken, 23456])
        monkeypatch.setattr(processes, "ephemeral_ports", lambda: (30000, 30001))
        monkeypatch.setattr(processes.random.SystemRandom, "randrange", lambda self, a, b: next(offers))
        if not port_free(23456):
            pytest.skip("port 23456 is in use on this machine")
        assert free_port(avoid={40000}) == 23456


def test_no_free_port_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(processes, "port_free", lambda port: False)
    with pytest.raises(StepError, match="no free port on 127.0.0.1"):
        free_port()

