"""`hybrid lab up`: the stack's whole network on this machine, configured like the cloud.

Steps: namespaces/links/routes (lab.netns) -> one SoftEther node + sshd per VPN node
(lab.node, running the SoftEther release the stack selects: lab.softether_build) -> specs from the topology
(softether.derive, the same function the cloud program uses) -> converge every node over SSH
with pinned host keys (softether.session) -> PaaS stand-ins -> connectivity matrix.

On a fresh lab the home server is converged first (every bridge dials it; a cascade that
fails its first login waits SoftEther's fixed 10 s before retrying), then all bridges in
parallel; a running lab converges all nodes at once, and sends no mutating SoftEther command
when nothing changed. Converging a running lab first restarts whatever of it died (a node's
SoftEther or sshd, the database, the web server; a node whose holder died is started again).

One operation at a time per lab directory (`lab.state.operation`); `lab down` cancels a
`lab up` in progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from softether import vpncmd
from softether.derive import NodeSpecs
from softether.plan import Change
from softether.session import Plan, Result
from softether.spec import BRIDGE_HUB, BridgeSpec, ServerSpec

from . import firewall, image, netns, paas, proc, softether_build
from .lab import (
    Lab,
    booted,
    open_lab,
    refresh_pids,
    running,
    session,
    softether_options,
    specs,
    use_release,
)
from .node import Node, build_compat_library
from .proc import LabError
from .state import lab_dir, operation
from .status import Probe, format_matrix, matrix, wait_for_matrix
from .vm import VmNode

SETTLE_S = 60.0  # after repairs: how long the network may take to be green
NUDGE_AFTER_S = 8.0  # ... and after how long the cascades not established are reconnected


def converge_site(
    lab: Lab,
    site: str,
    spec: ServerSpec | BridgeSpec,
    reset_users: frozenset[tuple[str, str]] = frozenset(),
) -> Result:
    """Converge one node over SSH (the result counts the mutating vpncmd commands sent)."""
    s = session(lab, site, spec)
    s.reset_users = reset_users
    try:
        result = s.converge()
    finally:
        s.transport.close()
    node = lab.nodes[site]
    if isinstance(node, VmNode):  # its first converge gave it a host key of its own
        node.pin(result.host_key)
    return result


def start_node(lab: Lab, site: str, authorized: str) -> None:
    """Start one node (SoftEther + sshd) and record its PIDs as soon as they exist."""
    node = lab.nodes[site]
    node.start(authorized)
    lab.state.record({f"{node.name}/{k}": pid for k, pid in node.pids.items()})


def revive_node(lab: Lab, site: str) -> list[str]:
    """Restart what died in a running node; record the new PIDs."""
    node = lab.nodes[site]
    restarted = node.revive()
    if restarted:
        lab.state.record({f"{node.name}/{k}": node.pids[k] for k in restarted})
    return [f"{site} {k}" for k in restarted]


def refused_logins(lab: Lab, site: str, spec: BridgeSpec) -> set[tuple[str, str]]:
    """(hub, user) on the server that a running bridge's cascades fail to log in as: their
    password was changed on one side by hand (read-only, one vpncmd session)."""
    s = session(lab, site, spec)
    try:
        node = s.read_node()
    finally:
        s.transport.close()
    hub = node.hub(BRIDGE_HUB)
    return {
        (c.remote_hub.lower(), c.username.lower())
        for c in (hub.cascades if hub else ())
        if c.auth_failed
    }


def reconnect_cascades(lab: Lab, nodes: NodeSpecs) -> list[str]:
    """CascadeOffline + CascadeOnline for every bridge cascade that is not established (in
    parallel); returns the sites reconnected."""

    def one(site: str) -> str | None:
        s = session(lab, site, nodes.bridges[site])
        try:
            hub = s.read_node().hub(BRIDGE_HUB)
            down = [c.name for c in (hub.cascades if hub else ()) if not c.established]
            if down:
                cmds = [
                    vpncmd.Command(name, (c,), hub=BRIDGE_HUB)
                    for c in down
                    for name in ("CascadeOffline", "CascadeOnline")
                ]
                s.apply(
                    Plan((Change(f"~ cascades {', '.join(down)}: reconnect", tuple(cmds)),), ())
                )
        finally:
            s.transport.close()
        return site if down else None

    with ThreadPoolExecutor(max_workers=max(1, len(nodes.bridges))) as pool:
        return [s for s in pool.map(one, nodes.bridges) if s]


def start_and_converge(
    lab: Lab, nodes: NodeSpecs
) -> tuple[list[str], list[str], dict[str, Result]]:
    """Start the nodes that are not running, restart what died in the others, and converge
    every node, as early as each can.

    A bridge converges after its own start and, when any node was just started, after the
    home server's converge (it dials the server); a running lab converges all at once.
    Returns (sites started, processes restarted, site -> (result, mutating commands)).
    """
    home = lab.stack.network.home.name
    todo = [s for s, n in lab.nodes.items() if not running(n)]
    for s in todo:
        _stop_leftovers(lab, lab.nodes[s])
    by_site: dict[str, ServerSpec | BridgeSpec] = {home: nodes.server, **nodes.bridges}
    revived: list[str] = []
    # Each task waits only for tasks submitted before it: enough workers never deadlock.
    with ThreadPoolExecutor(max_workers=3 * len(by_site)) as pool:
        authorized = lab.client_key[1] + "\n"
        started: dict[str, Future] = {s: pool.submit(start_node, lab, s, authorized) for s in todo}
        started |= {
            s: pool.submit(lambda site: revived.extend(revive_node(lab, site)), s)
            for s in lab.nodes
            if s not in todo
        }

        # A running bridge whose cascade the server refuses: the server re-sets that user's
        # password first, then the bridge converges (and re-sets its own).
        def check(site: str) -> set[tuple[str, str]]:
            started[site].result()
            return refused_logins(lab, site, nodes.bridges[site])

        refused = {s: pool.submit(check, s) for s in nodes.bridges if s not in todo}

        def converge_home() -> Result:
            started[home].result()
            reset = frozenset(u for f in refused.values() for u in f.result())
            return converge_site(lab, home, by_site[home], reset)

        first = pool.submit(converge_home)

        def converge_bridge(site: str) -> Result:
            started[site].result()
            if todo or (site in refused and refused[site].result()):
                first.result()
            return converge_site(lab, site, by_site[site])

        rest = {s: pool.submit(converge_bridge, s) for s in nodes.bridges}
        results = {home: first.result(), **{s: f.result() for s, f in rest.items()}}
    return todo, revived, results


def _stop_leftovers(lab: Lab, node: Node) -> None:
    """A node whose holder died is started again: first stop what of it still runs in its
    own namespace (its SoftEther would hold the ports), and forget its old PIDs."""
    if proc.exists(node.netns):
        node.stop_processes()
    lab.state.record({f"{node.name}/{k}": None for k in node.pids})
    node.pids.clear()


class Progress:
    """Step lines with the time since start and each step's duration."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.t0 = time.monotonic()
        self.say = say

    def step(self, name: str, fn: Callable[[], str | None]) -> None:
        t = time.monotonic()
        detail = fn()
        now = time.monotonic()
        extra = f": {detail}" if detail else ""
        self.say(f"[{now - self.t0:6.2f} s] {name}{extra} ({now - t:.2f} s)")

    @property
    def total(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class UpReport:
    seconds: float
    network_seconds: float  # nothing (or a running lab) -> full matrix
    results: dict[str, Result]
    matrix_ok: bool
    restarted: tuple[str, ...] = ()  # processes of a running lab found dead and restarted

    @property
    def mutating(self) -> int:
        return sum(r.mutating_commands for r in self.results.values())


def up(
    ref: str,
    say: Callable[[str], None] = print,
    root: Path | None = None,
    preload: bool | None = None,
    source: Literal["upstream", "debian"] | None = None,
    boot: bool | None = None,
) -> UpReport:
    """Bring the lab of `ref` up (or converge a running one); raises on a failed step.
    `boot` False: a new lab's bridges are plain processes, not booted machines (`open_lab`)."""
    with operation(lab_dir(ref, root), "lab up"):
        return _up(ref, say, root, preload, source, boot)


def _up(
    ref: str,
    say: Callable[[str], None],
    root: Path | None,
    preload: bool | None,
    source: Literal["upstream", "debian"] | None,
    boot: bool | None,
) -> UpReport:
    lab = open_lab(ref, root, preload, source, boot)
    p = Progress(say)
    st = lab.state
    st.stack, st.lab_id = ref, lab.layout.lab_id
    # Recorded before anything exists, so `down` after a crash finds it all.
    st.namespaces = list(dict.fromkeys([*st.namespaces, *(n.name for n in lab.layout.namespaces)]))
    st.save()
    has_paas = lab.layout.db is not None and lab.layout.app is not None
    db = paas.Database(lab.stack, lab.layout, st) if has_paas else None
    app = paas.WordPress(lab.stack, lab.layout, st) if has_paas else None
    paas_ready: list[BaseException | None] = []

    def network() -> str:
        made = netns.build(lab.layout)
        return f"{len(lab.layout.namespaces)} namespaces ({len(made)} new), {len(lab.layout.links)} links"

    p.step("network namespaces", network)
    p.step("firewall", lambda: firewall.enforce(lab.stack, lab.layout, vm_filter=not booted(lab)))

    def start_paas() -> None:
        # The DB's first start (datadir init) takes seconds: overlap it with the nodes.
        try:
            if db is not None:
                db.start()
            paas_ready.append(None)
        except BaseException as e:
            paas_ready.append(e)

    paas_thread = threading.Thread(target=start_paas, daemon=True)
    paas_thread.start()

    def softether() -> str:
        release = softether_build.release(softether_options(lab), say)
        vm = image.image(say) if booted(lab) else None
        started = st.extra.setdefault("softether", {})
        for node in lab.nodes.values():
            if not running(node):  # what it is about to start with, for `lab status`
                use_release(lab, node, release)
                started[node.name] = release.to_record()
                if isinstance(node, VmNode) and vm is not None:
                    node.image = vm.root
                    started[node.name]["image"] = str(vm.root)
        st.save()
        if any(n.compat_library for n in lab.nodes.values()):
            lib = build_compat_library(st.directory / "compat")
            return f"{release.label}, with the OpenSSL-3 library {lib.name} (LD_PRELOAD, see lab/node.py)"
        where = f" from {release.root}" if release.root else ""
        return f"{release.label}{where}"

    results: dict[str, Result] = {}
    restarted: list[str] = []
    fresh: list[str] = []  # nodes started in this up (a new lab, a namespace made again)

    def nodes() -> str:
        started, revived, res = start_and_converge(lab, specs(lab, create=True))
        results.update(res)
        restarted.extend(revived)
        fresh.extend(started)
        refresh_pids(lab)
        changed = sum(1 for r in results.values() if r.changed)
        mut = sum(r.mutating_commands for r in results.values())
        again = f" (restarted: {', '.join(revived)})" if revived else ""
        return (
            f"{len(started)} started, {len(lab.nodes) - len(started)} running{again}; "
            f"converged over SSH: {changed} changed, {mut} mutating commands"
        )

    try:
        p.step("softether", softether)
        p.step("softether + sshd nodes", nodes)
    except BaseException:
        # Let the PaaS thread finish, so every process it starts is recorded for `down`.
        paas_thread.join(120)
        raise
    for site, r in results.items():
        lines = r.diff.splitlines()
        say(
            f"           {site}: {len(lines)} change(s), {r.mutating_commands} mutating, {r.seconds:.2f} s"
            + (", bridge restarted" if r.restarted else "")
        )
    probes: list[Probe] = []

    def check() -> str:
        waited = ""
        if restarted or fresh or any(r.changed for r in results.values()):
            # A started, restarted or reconfigured server or bridge (a machine booted again
            # with its configuration in place converges with no change, its cascade still
            # connecting): the cascades reconnect by
            # themselves (SoftEther retries every second), a restarted bridge's tap gets its
            # address from the watcher. A bounded while before the matrix that counts.
            # A cascade that failed meanwhile may sit in SoftEther's back-off for tens of
            # seconds: after a short wait, reconnect the ones not established, once.
            green, took = wait_for_matrix(lab.layout, NUDGE_AFTER_S)
            nudged = [] if green else reconnect_cascades(lab, specs(lab))
            if not green:
                green, more = wait_for_matrix(lab.layout, SETTLE_S)
                took += more
            again = f", reconnected {', '.join(nudged)}" if nudged else ""
            waited = (
                f" ({'green' if green else 'not green'} after the changes: {took:.1f} s{again})"
            )
        probes.extend(matrix(lab.layout))
        return f"{sum(pr.ok for pr in probes)}/{len(probes)} reachable{waited}"

    p.step("connectivity matrix", check)
    network_s = p.total
    for line in format_matrix(lab.layout, probes):
        say("  " + line)

    def wordpress() -> str:
        paas_thread.join(120)
        if not paas_ready:
            raise LabError("paas: the database did not start within 120 s")
        if paas_ready[0] is not None:
            raise paas_ready[0]
        assert db is not None and app is not None
        # Installed before its web server starts: no visitor ever meets the installer.
        app.install()
        app.start()
        return (
            f"MariaDB {db.host.address}:{db.cfg.port}, WordPress {app.url} installed"
            f" (admin password: the lab's secret {paas.WP_SECRET}; DB host {app.db_host})"
        )

    if has_paas:
        p.step("paas stand-ins", wordpress)
    ok = all(pr.ok for pr in probes)
    say(
        f"lab {'up' if ok else 'UP WITH FAILURES'} in {p.total:.2f} s, network green after "
        f"{network_s:.2f} s (stack {ref}, lab id {lab.layout.lab_id})"
    )
    return UpReport(p.total, network_s, results, ok, tuple(restarted))
