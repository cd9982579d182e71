"""The controller's state file, read for `hybrid status` and its Prometheus output."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

ROLES = ("active", "standby")


def read(state_text: str) -> dict[str, Any]:
    """The state file's content as a dict with `role`, `since`, `failovers`,
    `last_failover_s` (and what else the controller wrote); {} for text that is not a state
    (a half-written or foreign file): the caller shows "unknown", never a guess."""
    try:
        data = json.loads(state_text)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("role") not in ROLES:
        return {}
    failovers = data.get("failovers", 0)
    last = data.get("last_failover_s")
    if isinstance(failovers, bool) or not isinstance(failovers, int) or failovers < 0:
        return {}
    if last is not None and (isinstance(last, bool) or not isinstance(last, int | float) or not math.isfinite(last)):
        return {}
    return data


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(states: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[str]:
    """Exposition lines for each site's bridges' states (as `read` returns them):
    `hybrid_failover_total` sums the takeovers of the site's bridges; `hybrid_failover_last_seconds`
    is the duration of the site's latest one (the state with the latest `since` that has one)."""
    total = ["# HELP hybrid_failover_total takeovers by a site's standby bridge", "# TYPE hybrid_failover_total counter"]
    last = ["# HELP hybrid_failover_last_seconds the last failover, first failed probe to routes claimed", "# TYPE hybrid_failover_last_seconds gauge", ]
    for site, items in sorted(states.items()):
        got = [s for s in items if s]
        labels = f'{{site="{_label(site)}"}}'
        total.append(f"hybrid_failover_total{labels} {sum(int(s.get('failovers', 0)) for s in got)}")
        timed = [s for s in got if s.get("last_failover_s") is not None]
        if timed:
            newest = max(timed, key=lambda s: float(s.get("since", 0)))
            last.append(f"hybrid_failover_last_seconds{labels} {float(newest['last_failover_s']):g}")
    return total + last
