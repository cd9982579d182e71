"""Faults reach SoftEther through the lab's session: the port is the spec's (for the home
server the stack's `network.home.vpnServer.port`), not a literal 5555. No root needed: the
session's transport is replaced by one that answers like vpncmd."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import lab.lab as handle
from lab import faults
from lab.lab import Lab, open_lab, specs
from lab.node import Node
from lab.proc import LabError
from softether.transport import RunRecord, RunResult
from topology.load import read_stack_file, stack_file

from ..softether.helpers import script_run, vpncmd_echo

SERVER_PORT = 4433


@dataclass
class VpncmdEcho:
    """Echoes each vpncmd script line as vpncmd does; `error` makes that command fail."""

    host: str = "fake-node"
    error: str = ""
    records: list[RunRecord] = field(default_factory=list)
    connects: int = 0

    def run(
        self,
        command: str,
        *,
        stdin: bytes = b"",
        timeout: float,
        redacted_stdin: str = "",
        abort_on: Sequence[str] = (),
    ) -> RunResult:
        self.records.append(RunRecord(command, redacted_stdin, 0, 0.0))
        return RunResult(0, vpncmd_echo(script_run(command, stdin), self.error), "@@pid 1\n", 0.1)

    def close(self) -> None:
        pass


@pytest.fixture
def lab_on_another_port(tmp_path: Path) -> Lab:
    config = read_stack_file(stack_file("dev"))
    config["hybrid-cloud:network"]["home"]["vpnServer"]["port"] = SERVER_PORT
    path = tmp_path / "stack" / "Pulumi.port.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    lab = open_lab(str(path), tmp_path / "labs")
    specs(lab, create=True)  # the lab's secrets, as `lab up` makes them
    return lab


def fake_transport(monkeypatch: pytest.MonkeyPatch, t: VpncmdEcho) -> None:
    def transport(lab: Lab, node: Node) -> VpncmdEcho:
        return t

    monkeypatch.setattr(handle, "transport", transport)


def test_fault_vpncmd_uses_the_spec_admin_port(
    monkeypatch: pytest.MonkeyPatch, lab_on_another_port: Lab
) -> None:
    lab = lab_on_another_port
    t = VpncmdEcho()
    fake_transport(monkeypatch, t)
    faults.delete_l3_switch(lab)
    sent = [r for r in t.records if "vpncmd" in r.command]
    assert [r.stdin for r in sent] == ["RouterStop L3SW", "RouterDelete L3SW"]
    assert all(f"localhost:{SERVER_PORT} " in r.command for r in sent)
    site = lab.stack.network.sites[0].name
    faults.vpncmd(lab, site, "CascadeList", hub="BRIDGE")
    bridge_port = specs(lab).bridges[site].admin_port
    assert f"localhost:{bridge_port} " in t.records[-1].command


def test_fault_vpncmd_refused_command_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch, lab_on_another_port: Lab
) -> None:
    fake_transport(monkeypatch, VpncmdEcho(error="RouterStop"))
    with pytest.raises(LabError, match=r"vpncmd RouterStop L3SW failed: error 29"):
        faults.delete_l3_switch(lab_on_another_port)
