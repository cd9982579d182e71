"""`hybrid lab status`: what runs, the cascades' states, and the connectivity matrix.

The matrix pings from every site's hosts to every other site's hosts that the stack's paths
let them reach (every protocol: components.firewall), all in parallel, each ping bounded (one
reply wanted, a few seconds at most). What the paths refuse is `hybrid lab test`'s
`firewall:` checks.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from components.firewall import allowed

from . import proc
from .lab import open_lab, refresh_pids
from .layout import Host, Layout
from .outputs import lab_report
from .vm import VmNode

PING_DEADLINE_S = 4


@dataclass(frozen=True)
class Probe:
    src: Host
    dst: Host
    ok: bool
    seconds: float


def ping(ns: str, address: str, deadline_s: int = PING_DEADLINE_S) -> bool:
    """True if `address` answers one ping from namespace `ns` within `deadline_s`."""
    argv = proc.in_ns(
        ns, "ping", "-n", "-q", "-c", "1", "-i", "0.5", "-W", "1", "-w", str(deadline_s), address
    )
    try:
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=deadline_s + 5, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    m = re.search(r"(\d+) (?:packets )?received", p.stdout)
    return bool(m and int(m.group(1)) > 0)


def pairs(layout: Layout) -> list[tuple[Host, Host]]:
    """Hosts of different sites, where a path lets the first ping the second."""
    return [
        (a, b)
        for a in layout.hosts
        for b in layout.hosts
        if a.site != b.site and allowed(layout.paths, a.address, b.address, None)
    ]


def matrix(layout: Layout, deadline_s: int = PING_DEADLINE_S) -> list[Probe]:
    def probe(pair: tuple[Host, Host]) -> Probe:
        t = time.monotonic()
        ok = ping(pair[0].ns, str(pair[1].address), deadline_s)
        return Probe(pair[0], pair[1], ok, time.monotonic() - t)

    todo = pairs(layout)
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(todo)))) as pool:
        return list(pool.map(probe, todo))


def wait_for_matrix(layout: Layout, seconds: float) -> tuple[bool, float]:
    """Repeat the matrix until all green or `seconds` pass; (green, seconds taken)."""
    t0 = time.monotonic()
    while True:
        if all(p.ok for p in matrix(layout, deadline_s=2)):
            return True, time.monotonic() - t0
        if time.monotonic() - t0 > seconds:
            return False, time.monotonic() - t0
        time.sleep(0.2)


def format_matrix(layout: Layout, probes: list[Probe]) -> list[str]:
    """Rows: from; columns: to. `ok`, `--` (no answer), `.` (same site or no path: not
    probed)."""
    res = {(p.src.ns, p.dst.ns): p.ok for p in probes}
    labels = [f"{h.site}/{h.subnet} {h.address}" for h in layout.hosts]
    w = max(len(x) for x in labels)
    head = " " * (w + 2) + " ".join(f"{h.address!s:>15}" for h in layout.hosts)
    rows = [head]
    for label, a in zip(labels, layout.hosts, strict=True):
        cells = []
        for b in layout.hosts:
            got = res.get((a.ns, b.ns))
            cells.append(f"{'.' if got is None else ('ok' if got else '--'):>15}")
        rows.append(f"{label:<{w}}  " + " ".join(cells))
    return rows


def status(ref: str, say: Callable[[str], None] = print, root: Path | None = None) -> int:
    """Print what runs, the cascades, and the matrix; 0 if all is up and green."""
    from softether.health import text_lines

    lab = open_lab(ref, root)
    layout, st = lab.layout, lab.state
    if not st.path.exists():
        say(f"no lab for stack {ref} (nothing recorded in {st.directory})")
        return 1
    refresh_pids(lab)
    say(f"lab {layout.lab_id} of stack {ref}, state in {st.directory}")
    missing = [n.name for n in layout.namespaces if not proc.exists(n.name)]
    say(
        f"namespaces: {len(layout.namespaces) - len(missing)}/{len(layout.namespaces)}"
        + (f" (missing: {', '.join(missing)})" if missing else "")
    )
    healthy = not missing
    what = {v.ns.rsplit("-", 1)[1]: f"{v.name} {v.kind}" for v in layout.nodes}
    what |= {"db": "MariaDB (for RDS)", "app": "WordPress (for App Service)"}
    # What each node's SoftEther is: "upstream 5.2.5188 10d6efcc" / "debian 5.01.9674".
    release = {n.name: n.softether_label for n in lab.nodes.values()}
    machines = {n.name: n.vm for n in lab.nodes.values() if isinstance(n, VmNode) and n.image}
    for name, pid in sorted(st.pids.items()):
        up = st.live(name) is not None
        healthy &= up
        key, _, process = name.partition("/")
        desc = what.get(key, "")
        if process == "softether":  # the release installed; the report has what it says
            desc += f", installed SoftEther: {release.get(key) or 'unknown'}"
        if process == "holder" and key in machines:
            desc += f", {machines[key].describe()}"
        say(f"  {name:<16} pid {pid:<8} {'running' if up else 'NOT RUNNING':<12} {desc}")
    if healthy:
        # What `hybrid lab outputs | hybrid status --outputs -` reports (softether/health.py).
        report = lab_report(lab)
        say("what each node's SoftEther reports (hybrid status):")
        for line in text_lines(report):
            say("  " + line)
        healthy &= report.exit_code == 0
    probes = matrix(layout)
    for line in format_matrix(layout, probes):
        say("  " + line)
    green = all(p.ok for p in probes)
    say(f"matrix: {sum(p.ok for p in probes)}/{len(probes)} reachable")
    return 0 if healthy and green else 1
