"""Shared by the softether tests: fixtures on disk, the reference specs with fake secrets.

Fixtures are one file per command per scenario (napalm's FakeDevice style):
`fixtures/<scenario>/<Command>[_<args>].csv` holds vpncmd's output of that command run
server-wide, `fixtures/<scenario>/<HUB>/<Command>[_<args>].csv` of one run in hub HUB (the
masked script line names the file, every run of characters other than letters, digits, `.`
and `-` written `_`), and `fixtures/<scenario>/preamble.txt` what vpncmd prints before the
first prompt (`Password: ...` when an admin password is set). `vpncmd_output` answers any
script from them, command by command, as vpncmd would print it: a new read needs one new file
per scenario, not a recapture of every script.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from lab.node import Node
from lab.proc import sh
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


def script_run(command: str, stdin: bytes) -> list[str]:
    """The script lines a runner's vpncmd command reads: the first `head -c N` bytes of its
    stdin (the admin password follows them)."""
    m = re.search(r"head -c (\d+)", command)
    assert m is not None, command
    return stdin[: int(m.group(1))].decode().splitlines()


def vpncmd_echo(lines: Sequence[str], error: str = "") -> str:
    """What vpncmd prints for `lines` that all succeed and print nothing: each after its
    prompt; a line starting with `error` fails with error 29 instead."""
    out = "Password: ***\n\n"
    for line in lines:
        out += f"VPN Server>{line}\n"
        if error and line.startswith(error):
            out += "Error occurred. (Error code: 29)\nThe specified object does not exist.\n"
    return out


def fixture_file(scenario: str, hub: str | None, masked_line: str) -> Path:
    """Where the output of one script line (run in `hub`, None: server-wide) is kept."""
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", masked_line) + ".csv"
    return FIXTURES / scenario / hub / name if hub else FIXTURES / scenario / name


def script_contexts(masked: Sequence[str]) -> list[str | None]:
    """The hub each line of a `vpncmd.script` runs in (as the script selects it)."""
    out: list[str | None] = []
    current: str | None = None
    for line in masked:
        out.append(current)
        if line == "Hub":
            current = None
        elif line.startswith("Hub "):
            current = line[4:]
    return out


def prompts(scenario: str, lines: Sequence[str], masked: Sequence[str]) -> list[tuple[str, Path]]:
    """(vpncmd's prompt line, fixture file) per script line: `VPN Server/HUB>` once a
    `Hub HUB` succeeded, `VPN Server>` when none is selected."""
    out: list[tuple[str, Path]] = []
    selected: str | None = None
    for line, shown, hub in zip(lines, masked, script_contexts(masked), strict=True):
        path = fixture_file(scenario, hub, shown)
        out.append((f"VPN Server{'/' + selected if selected else ''}>{line}", path))
        if shown == "Hub":
            selected = None
        elif shown.startswith("Hub ") and path.exists():
            failed = path.read_text().startswith("Error occurred.")
            selected = selected if failed else shown[4:]
    return out


def answer(scenario: str, lines: Sequence[str], masked: Sequence[str]) -> str:
    """vpncmd's stdout for a script (`lines` as run, `masked` as recorded), from the
    scenario's per-command files."""
    text = (FIXTURES / scenario / "preamble.txt").read_text()
    for prompt, path in prompts(scenario, lines, masked):
        if not path.exists():
            raise AssertionError(
                f"no fixture {path.relative_to(FIXTURES)}: capture this command's output "
                "(tests/softether/capture_fixtures.py)"
            )
        text += prompt + "\n" + path.read_text()
    return text


def vpncmd_output(scenario: str, commands: Sequence[v.Command]) -> str:
    """vpncmd's stdout for the script of `commands`, answered command by command."""
    return answer(scenario, v.script(commands), v.script(commands, masked=True))


def fixture_state(name: str, commands: list[v.Command], *, server: bool) -> NodeState:
    parsed = v.split_output(vpncmd_output(name, commands), v.script(commands))
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
