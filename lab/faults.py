"""Faults injected into a running lab (tests and bench): each returns when the fault is in.

A fault is a function taking the lab handle (`lab.lab`); SoftEther is reached the way the
lab converges it, through the node's session (SSH from the operator's place, the spec's admin
port and password: the server's port is the stack's `network.home.vpnServer.port`).
Recovery is then measured with `status.wait_for_matrix`: nothing here repairs anything.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

from softether import vpncmd as v
from softether.spec import BRIDGE_HUB

from . import paas
from .lab import Lab, session, specs
from .node import Node
from .proc import LabError, comm, pids_in, run, send

VPNCMD_TIMEOUT_S = 20.0


def vpncmd(lab: Lab, site: str, *command: str, hub: str | None = None) -> str:
    """One vpncmd command on `site`'s node, in `hub` (None: server-wide), through the lab's
    session; its output lines. A command SoftEther refuses raises LabError."""
    nodes = specs(lab)
    spec = nodes.server if site == lab.stack.network.home.name else nodes.bridges[site]
    cmd = v.Command(command[0], tuple(command[1:]), hub=hub)
    s = session(lab, site, spec)
    try:  # the session's runner: its timeout, access-denied and retry handling
        ((_, reply),) = s.runner.run([cmd], VPNCMD_TIMEOUT_S)
    finally:
        s.transport.close()
    if not reply.ok:
        raise LabError(f"{site}: vpncmd {cmd} failed: error {reply.code} {reply.message}")
    return "\n".join(reply.output)


def restart_softether(node: Node) -> None:
    """Stop and start a node's SoftEther process (what a crash + service restart does)."""
    node.exec(node.softether_command("stop") + " >/dev/null 2>&1", timeout=30, check=False)
    node.exec(node.softether_command("start") + " >/dev/null", timeout=30)
    node.wait_listening(node.admin_port, timeout=20)


def restart_server(lab: Lab) -> None:
    restart_softether(lab.nodes[lab.stack.network.home.name])


def link_down(lab: Lab, site: str, seconds: float) -> None:
    """Cut a bridge's internet link (its port on the internet side) for `seconds`."""
    link = lab.layout.public_link(site)
    run(["ip", "-n", link.b_ns, "link", "set", link.b_if, "down"])
    try:
        time.sleep(seconds)
    finally:
        run(["ip", "-n", link.b_ns, "link", "set", link.b_if, "up"])


def delete_l3_switch(lab: Lab) -> None:
    """What an operator's slip does: `RouterStop` + `RouterDelete` on the home server."""
    home = lab.stack.network.home
    switch = home.vpn_server.l3_switch
    vpncmd(lab, home.name, "RouterStop", switch)
    vpncmd(lab, home.name, "RouterDelete", switch)


def empty_database(lab: Lab) -> None:
    """The stack's database dropped and made anew, empty (what a re-created RDS instance gives
    the app): WordPress's tables are gone, it is not installed."""
    db = paas.Database(lab.stack, lab.layout, lab.state)
    name = db.cfg.db_name
    sql = f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;"
    run(["mariadb", "--no-defaults", f"--socket={db.socket}", "-uroot"], stdin=sql)


def delete_cascade(lab: Lab, site: str) -> None:
    """Remove a bridge's cascade by hand (drift the next converge must repair)."""
    cascade = specs(lab).bridges[site].cascades[0]
    vpncmd(lab, site, "CascadeDelete", cascade.name, hub=BRIDGE_HUB)


@dataclass
class SshKiller:
    """When the `nth` vpncmd run appears in a node, kill its SSH session processes.

    The connection a converge is using dies in the middle of a vpncmd script (nth=2: the
    apply after the read), as with a dropped link. `killed` lists the PIDs killed.
    """

    node: Node
    nth: int
    within_s: float = 60.0
    killed: list[int] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> SshKiller:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(self.within_s + 5)

    def _watch(self) -> None:
        listener = self.node.sshd_pid()
        seen: set[int] = set()
        deadline = time.monotonic() + self.within_s
        while time.monotonic() < deadline:
            pids = pids_in(self.node.netns)
            seen |= {p for p in pids if comm(p) == "vpncmd"}
            if len(seen) >= self.nth:
                for pid in pids:
                    if comm(pid) == "sshd" and pid != listener and send(pid, signal.SIGKILL):
                        self.killed.append(pid)
                return
            time.sleep(0.02)
