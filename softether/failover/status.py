"""The controller's state file, read for `hybrid status` and its Prometheus output."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("active", "standby")


def read(state_text: str) -> dict[str, Any]:
    """The state file's content as a dict with `role`, `since`, `failovers`,
    `last_failover_s` (and what else the controller wrote); {} for text that is not a state
    (no file, a foreign one): the caller shows nothing rather than a guess."""
    try:
        data = json.loads(state_text)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("role") not in ROLES:
        return {}
    failovers, last = data.get("failovers", 0), data.get("last_failover_s")
    if isinstance(failovers, bool) or not isinstance(failovers, int) or failovers < 0:
        return {}
    if last is not None and (isinstance(last, bool) or not isinstance(last, int | float) or not math.isfinite(last)):
        return {}
    return data


@dataclass(frozen=True)
class SiteFailovers:
    failovers: int  # the takeovers of the site's bridges, summed
    last_s: float | None  # the latest takeover's duration (first failed probe to routes claimed)


def by_site(states: Iterable[Mapping[str, Any]]) -> dict[str, SiteFailovers]:
    """The states of any bridges (as `read` returns them; {} skipped), per site they carry."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for s in states:
        if s:
            groups.setdefault(str(s.get("site", "")), []).append(s)
    out = {}
    for site, items in sorted(groups.items()):
        timed = [s for s in items if s.get("last_failover_s") is not None]
        newest = max(timed, key=lambda s: float(s.get("since", 0)), default=None)
        out[site] = SiteFailovers(
            sum(int(s.get("failovers", 0)) for s in items),
            None if newest is None else float(newest["last_failover_s"]),
        )
    return out
