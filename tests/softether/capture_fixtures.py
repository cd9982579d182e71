"""Capture vpncmd /CSV outputs from the real Debian build into tests/softether/fixtures/.

Run by hand as root: `python -m tests.softether.capture_fixtures`. Each scenario is a folder of
one file per command (see tests/softether/helpers.py), cut from vpncmd's stdout verbatim and
checked to give that stdout back. The passwords are this script's fixed fake ones, so the
outputs can be committed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lab.node import Testbed
from softether import vpncmd as v
from softether.facts import read_commands
from softether.session import Session

from .helpers import FIXTURES, answer, error_script, fixture_file, reference_specs, script_contexts


def save_replies(scenario: str, lines: list[str], masked: list[str], stdout: str) -> int:
    """Cut vpncmd's stdout of a script into the scenario's files; the number written."""
    raw = stdout.removesuffix("\n").split("\n")
    starts: list[int] = []
    for n, ln in enumerate(raw):
        m = v.PROMPT.match(ln)
        if m and len(starts) < len(lines) and m.group(1) == lines[len(starts)]:
            starts.append(n)
    if len(starts) != len(lines):
        raise SystemExit(f"{scenario}: vpncmd ran {len(starts)} of {len(lines)} lines")
    (FIXTURES / scenario).mkdir(parents=True, exist_ok=True)
    (FIXTURES / scenario / "preamble.txt").write_text("".join(f"{ln}\n" for ln in raw[: starts[0]]))
    written: dict[Path, str] = {}
    ends = [*starts[1:], len(raw)]
    for start, end, shown, hub in zip(starts, ends, masked, script_contexts(masked), strict=True):
        body = "".join(f"{ln}\n" for ln in raw[start + 1 : end])
        path = fixture_file(scenario, hub, shown)
        if written.setdefault(path, body) != body:
            raise SystemExit(f"{path}: two runs of one command answered differently")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    if answer(scenario, lines, masked) != stdout:
        raise SystemExit(f"{scenario}: the files do not give vpncmd's output back")
    return len(written)


def save(name: str, session: Session, commands: list[v.Command]) -> None:
    lines, res = session.runner.run_script(commands, 20)
    n = save_replies(name, lines, v.script(commands, masked=True), res.stdout)
    print(f"{name}: {len(lines)} lines, {n} files, rc {res.rc}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hc-capture-") as tmp, Testbed(Path(tmp)) as bed:
        home = bed.add("home", "server", "198.51.100.1/24", lan_device="eth1")
        aws = bed.add("aws", "bridge", "198.51.100.2/24")
        specs = reference_specs(home.host, aws.restart_command)
        server = Session(bed.transport(home), specs.server)
        save("server_fresh_read", server, read_commands(specs.server))
        server.converge()
        save("server_converged_read", server, read_commands(specs.server))
        bridge = Session(bed.transport(aws), specs.bridges["Hybrid-VPC"])
        save("bridge_fresh_read", bridge, read_commands(bridge.spec))
        bridge.converge()
        time.sleep(1)
        save("bridge_converged_read", bridge, read_commands(bridge.spec))
        errors = error_script(specs)
        save("server_apply_errors", server, errors)


if __name__ == "__main__":
    main()
