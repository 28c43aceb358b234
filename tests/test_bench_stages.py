"""bench/api_stages.py's reading of the probe's events (the benchmark itself runs servers: not a unit test)."""

from __future__ import annotations

import pytest

from bench import api_stages


def test_each_request_is_split_at_its_own_write_read_and_body(monkeypatch):
    monkeypatch.setattr(api_stages, "WARM_UP", 0)
    events = []
    for n, t in enumerate((0.0, 1.0)):  # two requests, a second apart; times in seconds
        events += [
            ["view", t + 0.000, t + 0.001, n],  # the first step
            ["write", t + 0.0035, 0.0, 400],  # the upstream request, during the view's second step
            ["view", t + 0.003, t + 0.004, n],  # the second step (recorded when it ends)
            ["read", t + 0.005, t + 0.0051, 0],
            ["body", t + 0.007, 0.0, 260],
            ["view", t + 0.0072, t + 0.0075, n],
        ]
    events.append(["view", 2.0, 2.001, 9])  # a view of one step: no admission to split at, left out
    result = api_stages.stages(events)
    expected = (1.0, 2.0, 0.5, 1.5, 2.0, 7.0)
    for name, ms in zip(api_stages.STAGES, expected, strict=True):
        assert result[name] == [pytest.approx(ms), pytest.approx(ms)], name
