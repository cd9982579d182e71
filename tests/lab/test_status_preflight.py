"""`hybrid preflight` against a real home node (SoftEther + sshd in a namespace) in each state
it reports: fresh, converged, wrong password, host key unpinned or changed, operator key
refused, foreign hub, missing LAN device, SoftEther stopped. Never a mutating vpncmd command."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from cli.preflight import PASSWORD_ENV, Check, Target, preflight, server_spec
from lab.node import Node, Testbed, client_key_file, generate_client_key, netns_socket
from softether.health import Report
from softether.session import Session
from softether.transport import RunRecord
from topology import Stack, load_stack

from ..softether.helpers import mutating_commands

pytestmark = pytest.mark.live

PASSWORD = "preflightAdmin1OfTwentyPlus"  # as strong as homeAdminPassword must be


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed(Path(tmp_path_factory.mktemp("preflight")), source="debian") as b:  # a stock home server
        b.add("home", "server", "198.51.100.1/24", lan_device="eth1")
        yield b


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack("dev")


def run(
    bed: Testbed, stack: Stack, *, password: str | None = PASSWORD, host_key: str | None = "",
    key: str | None = None,
) -> tuple[dict[str, Check], list[str], int]:
    """(checks by name, lines, mutating vpncmd commands sent)."""
    home = bed.nodes["home"]
    records: list[RunRecord] = []
    checks = preflight(
        stack,
        Target(home.host, 22, "root", home.host_key if host_key == "" else host_key),
        key or bed.client_key,
        password,
        lambda h, p, t: netns_socket(home.netns, h, p, t),
        records=records,
    )
    print("\n".join(c.line() for c in checks))
    return {c.name: c for c in checks}, [c.line() for c in checks], mutating_commands(records)


def levels(checks: dict[str, Check]) -> dict[str, str]:
    return {n: c.level for n, c in checks.items()}


def test_preflight_fresh_server_passes_with_warnings(bed: Testbed, stack: Stack) -> None:
    checks, _, mutating = run(bed, stack, password=None)
    assert mutating == 0
    assert levels(checks) == {
        "ssh": "PASS",
        "host key": "PASS",
        "root login": "PASS",
        "softether installed": "PASS",
        "softether running": "PASS",
        "listener": "PASS",
        "lan device": "PASS",
        "version": "WARN",
        "admin password": "WARN",
        "hubs": "PASS",
        "l3 switches": "PASS",
    }
    assert "5.01" in checks["version"].text and "Established" in checks["version"].text
    assert checks["admin password"].text.startswith("unset")
    assert "the stack removes 443, 992, 1194" in checks["listener"].text
    # A fresh server has hub DEFAULT (the stack's lan hub: adopted) and no HYBRID, no L3SW.
    assert "DEFAULT: adopted" in checks["hubs"].text and "HYBRID: created" in checks["hubs"].text
    assert checks["l3 switches"].text == "L3SW: created"


def test_preflight_unpinned_or_changed_host_key_prints_the_line_to_pin(
    bed: Testbed, stack: Stack
) -> None:
    home = bed.nodes["home"]
    checks, lines, _ = run(bed, stack, host_key=None)
    assert checks["host key"].level == "FAIL" and "root login" not in checks
    assert f'homeHostKey "{home.host_key}"' in lines[-1]
    assert f"ssh-keyscan line: {home.host} {home.host_key}" in lines[-1]
    other = generate_client_key(Path(bed.root) / "other")[1]
    checks, lines, _ = run(bed, stack, host_key=" ".join(other.split()[:2]))
    assert checks["host key"].level == "FAIL" and "the pinned key is ssh-ed25519 SHA256:" in lines[-1]


def test_preflight_no_ssh_service_fails_first_and_stops(bed: Testbed, stack: Stack) -> None:
    home = bed.nodes["home"]
    checks = preflight(
        stack,
        Target(home.host, 2222, "root", home.host_key),
        bed.client_key,
        PASSWORD,
        lambda h, p, t: netns_socket(home.netns, h, p, t),
    )
    assert [c.line().split(":")[0] for c in checks] == ["FAIL ssh"]
    assert f"root@{home.host}:2222: no SSH service answers (ConnectionRefusedError" in checks[0].text


def test_status_an_outage_the_ssh_retries_lived_through_is_reported(bed: Testbed, stack: Stack) -> None:
    """Issue 24 (`--watch` risk): a link down while the report connects, back before the SSH
    deadline, was reported HEALTHY. The first two connection attempts fail here."""
    import errno

    from softether.health import probe, text_lines
    from softether.outputs import NodeOutput, node_output
    from softether.spec import spec_to_dict

    home = bed.nodes["home"]
    tries: list[int] = []

    def flaky(host: str, port: int, timeout: float) -> socket.socket:
        tries.append(1)
        if len(tries) <= 2:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return netns_socket(home.netns, host, port, timeout)

    spec = spec_to_dict(server_spec(stack, PASSWORD), reveal=True)
    node = NodeOutput.model_validate(node_output("server", home.host, 22, "root", home.host_key, spec))
    transport = bed.transport(home)
    transport.sock_factory = flaky
    try:
        report = probe("home", node, transport, {})
    finally:
        transport.close()
    lines = text_lines(Report("dev", [report]))
    print("\n".join(lines))
    assert report.reachable and report.ssh_failed_attempts == 2
    assert "SSH answered after 2 failed attempt(s) (an outage during the report)" in report.problems
    assert lines[0].startswith("stack dev: DEGRADED (home)")
    assert "  SSH: answered after 2 failed attempt(s)" in lines


def test_preflight_refused_operator_key_fails_root_login(bed: Testbed, stack: Stack) -> None:
    stranger = generate_client_key(Path(bed.root) / "stranger")[0]
    checks, _, _ = run(bed, stack, key=stranger)
    assert checks["root login"].level == "FAIL"
    assert "operatorPublicKey" in checks["root login"].text and "softether running" not in checks


def test_preflight_converged_server_matches_and_wrong_password_fails(
    bed: Testbed, stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = bed.nodes["home"]
    Session(bed.transport(home), server_spec(stack, PASSWORD)).converge()
    checks, _, mutating = run(bed, stack)
    assert mutating == 0
    assert checks["admin password"].level == "PASS"
    assert checks["hubs"].text == "DEFAULT: adopted as it is; HYBRID: adopted as it is"
    assert checks["l3 switches"].text == "L3SW: adopted as it is"
    assert checks["listener"].text == "TCP 5555 (network.home.vpnServer.port)"
    checks, lines, mutating = run(bed, stack, password="someOtherPassword2ofThisStack")
    assert mutating == 0
    assert checks["admin password"].level == "FAIL" and "hubs" not in checks
    assert cli(bed, PASSWORD, capsys, monkeypatch) == (
        0,
        "PASS admin password: set, and matches the stack's secret",
    )
    assert cli(bed, "someOtherPassword2ofThisStack", capsys, monkeypatch) == (1, lines[-1])
    checks, _, _ = run(bed, stack, password=None)
    assert checks["admin password"].level == "WARN" and "not compared" in checks["admin password"].text


def cli(
    bed: Testbed, password: str, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[int, str]:
    """`hybrid preflight` as a user runs it against the node: (exit code, admin password line)."""
    home = bed.nodes["home"]
    key = client_key_file(Path(bed.root) / "client")
    mp.setenv(PASSWORD_ENV, password)
    capsys.readouterr()
    code = main(
        ["preflight", "--stack", "dev", "--key", str(key), "--host", home.host,
         "--netns", home.netns, "--host-key", home.host_key]
    )
    out = capsys.readouterr().out
    return code, next(ln for ln in out.splitlines() if " admin password: " in ln)


def vpncmd(node: Node, command: str) -> None:
    node.exec(f"vpncmd localhost:5555 /SERVER /PASSWORD:{PASSWORD} /CMD {command} >/dev/null")


def test_preflight_foreign_hub_is_named_as_left_alone(bed: Testbed, stack: Stack) -> None:
    home = bed.nodes["home"]
    vpncmd(home, "HubCreate FAMILY /PASSWORD:familyHub1")
    vpncmd(home, "RouterAdd FAMILYSW")
    try:
        checks, _, mutating = run(bed, stack)
        assert mutating == 0
        # The home server's spec prunes nothing (audit #13): the user's hub and switch stay.
        assert checks["hubs"].level == "PASS"
        assert "FAMILY: not the stack's, left alone" in checks["hubs"].text
        assert checks["l3 switches"].level == "PASS"
        assert "FAMILYSW: not the stack's, left alone" in checks["l3 switches"].text
        assert "FAMILY" in home.exec(f"vpncmd localhost:5555 /SERVER /PASSWORD:{PASSWORD} /CSV /CMD HubList")
    finally:
        vpncmd(home, "RouterDelete FAMILYSW")
        vpncmd(home, "HubDelete FAMILY")


def test_preflight_missing_lan_device_fails(bed: Testbed, stack: Stack) -> None:
    home = bed.nodes["home"]
    home.exec("ip link set eth1 down && ip link set eth1 name eth7")
    try:
        checks, _, _ = run(bed, stack)
        assert checks["lan device"].level == "FAIL" and "eth1 does not exist" in checks["lan device"].text
    finally:
        home.exec("ip link set eth7 name eth1 && ip link set eth1 up")


def test_preflight_stopped_softether_fails_running_and_listener(bed: Testbed, stack: Stack) -> None:
    home = bed.nodes["home"]
    home.exec(home.softether_command("stop") + " >/dev/null 2>&1")
    try:
        checks, _, _ = run(bed, stack)
        assert checks["softether running"].level == "FAIL"
        assert checks["listener"].level == "FAIL" and "admin password" not in checks
    finally:
        home.exec(home.softether_command("start") + " >/dev/null")
        home.wait_listening(5555)
