"""Shared by the softether tests: fixtures on disk, the reference specs with fake secrets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.node import Node, sh
from softether import vpncmd as v
from softether.derive import NodeSpecs, derive, secret_names
from softether.facts import NodeState, parse_state
from softether.transport import RunRecord
from topology import load_stack, plan_routes

FIXTURES = Path(__file__).parent / "fixtures"
FAKE = "fixture-secret"  # the capture script's fake passwords: f"{FAKE}-{i}"


def reference_specs(
    server_address: str | None = None,
    restart_command: str | None = None,
    prefix: str = FAKE,
    server_cert: str | None = None,
) -> NodeSpecs:
    net = load_stack("dev").network
    secrets = {n: f"{prefix}-{i}" for i, n in enumerate(secret_names(net))}
    return derive(
        net,
        plan_routes(net),
        secrets,
        server_address=server_address,
        restart_command=restart_command,
        server_cert=server_cert,
    )


def fixture(name: str) -> tuple[list[str], str]:
    """(script lines as they were run, vpncmd stdout) of a captured fixture."""
    lines = (FIXTURES / f"{name}.script").read_text().splitlines()
    return lines, (FIXTURES / f"{name}.out").read_text()


def fixture_state(name: str, commands: list[v.Command], *, server: bool) -> NodeState:
    lines, out = fixture(name)
    assert lines == v.script(commands, masked=True), "fixture was captured for another script"
    parsed = v.split_output(out, v.script(commands))
    return parse_state(
        v.pair(commands, parsed.replies),
        admin_password_set=parsed.password_prompted,
        server=server,
    )


def mutating_commands(records: Sequence[RunRecord]) -> int:
    """Mutating vpncmd commands among the scripts a transport was sent (by their redacted
    text): the tests' own count of what reached a node, independent of the session's."""
    n = 0
    for r in records:
        if "vpncmd" not in r.command:
            continue
        for line in r.stdin.splitlines():
            name = line.split(" ", 1)[0]
            n += bool(name) and name not in v.READ_ONLY
    return n


def error_script(specs: NodeSpecs) -> list[v.Command]:
    """Commands that fail on a converged reference server, each in its own way."""
    C = v.Command
    hybrid_vpc = specs.server.hub("HYBRID").users[0].password
    return [
        C("HubCreate", ("HYBRID", v.SecretArg(specs.server.admin_password, "/PASSWORD"))),
        C("ListenerDelete", ("443",)),
        C("UserPasswordSet", ("hybrid-vpc", v.SecretArg(hybrid_vpc, "/PASSWORD")), hub="HYBRID"),
        C("UserList", hub="NOPE"),
        C("RouterIfAdd", ("L3SW", "/HUB:HYBRID", "/IP:192.168.10.1/255.255.255.0")),
        C("VpnOverIcmpDnsSet", ("/ICMP:no", "/DNS:no")),
        C("CascadeList"),
        C("ServerInfoGet"),
    ]


def softether_processes(node: Node) -> list[tuple[str, list[str]]]:
    """(executable as the node sees it, environment) of every SoftEther process in `node`'s
    network namespace, from /proc."""
    out = []
    for pid in sh("ip", "netns", "pids", node.netns, check=False).split():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        if os.path.basename(exe) in ("vpnserver", "vpnbridge"):
            out.append((exe, env))
    return out
