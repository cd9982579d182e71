"""Real SoftEther in network namespaces (the pinned upstream build when cached, else Debian's
5.01), configured over real SSH.

Tests run in file order and build on each other (fresh server -> converged -> drift -> the
bridge cascades to it); each asserts its own outcome.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from pydantic import SecretStr

from lab.node import Node, Testbed
from lab.proc import comm, pids_in
from softether import hostos
from softether import vpncmd as v
from softether.derive import NodeSpecs
from softether.errors import AccessDeniedError, HostKeyRefused, HostUnreachable
from softether.session import Session
from softether.transport import SshTransport

from .helpers import softether_processes

pytestmark = pytest.mark.live


def sent_commands(transport: SshTransport) -> list[str]:
    """Names of the vpncmd commands in every script the transport sent."""
    return [
        line.split()[0]
        for rec in transport.records
        for line in rec.stdin.splitlines()
        if line.strip()
    ]


def only_reads(transport: SshTransport) -> bool:
    """Every command run was a vpncmd session (its script checked separately) or the
    read-only host-facts script: no OS change was sent."""
    return all("vpncmd" in r.command or r.command.startswith("echo @@") for r in transport.records)


@contextmanager
def cmdline_sampler() -> Iterator[list[str]]:
    """Collect every process command line on the machine while the block runs."""
    seen: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    with suppress(OSError):
                        seen.append(
                            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                        )
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(5)


def secrets_of(specs: NodeSpecs) -> list[str]:
    vals = list(specs.server.secrets())
    for b in specs.bridges.values():
        vals += b.secrets()
    return sorted(set(vals))


def test_live_fresh_server_converges_to_reference_spec(
    testbed: Testbed, home: Node, live_specs: NodeSpecs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="softether")
    transport = testbed.transport(home)
    with cmdline_sampler() as cmdlines:
        result = Session(transport, live_specs.server).converge()
    assert result.changed
    assert result.vpncmd_sessions == 3  # read, apply (one /IN script), verify
    assert len(cmdlines) > 100, "the sampler must have seen processes"
    assert any("vpncmd" in c for c in cmdlines), "sampling must have overlapped vpncmd"
    leaked = [s for s in secrets_of(live_specs) if any(s in c for c in cmdlines)]
    assert leaked == [], "a password appeared in a process command line"
    text = caplog.text + result.diff + "".join(r.command + r.stdin for r in transport.records)
    assert [s for s in secrets_of(live_specs) if s in text] == []

    node, _ = Session(testbed.transport(home), live_specs.server).get_state()
    assert node.admin_password_set
    assert node.listeners == {5555: True}
    assert sorted(h.name for h in node.hubs.values()) == ["DEFAULT", "HYBRID"]
    assert {u.name for u in node.hubs["default"].users} == {"operator"}
    assert {u.name for u in node.hubs["hybrid"].users} == {"hybrid-vpc", "hybrid-vnet"}
    assert [(b.hub, b.device, b.status) for b in node.bridges] == [("DEFAULT", "eth1", "Operating")]
    sw = node.l3_switches["l3sw"]
    assert sw.running
    assert set(sw.interfaces) == {
        ("DEFAULT", IPv4Interface("192.168.1.249/24")),
        ("HYBRID", IPv4Interface("192.168.10.1/24")),
    }
    assert {(str(n), str(g)) for n, g, _ in sw.routes} == {
        ("192.168.20.0/24", "192.168.10.2"),
        ("192.168.21.0/24", "192.168.10.2"),
        ("192.168.30.0/24", "192.168.10.3"),
        ("192.168.31.0/24", "192.168.10.3"),
    }
    assert node.protocols is not None and not node.protocols.openvpn and not node.protocols.sstp
    # No hub admits a blank hub-admin password any more (SoftEther allows one from localhost).
    for hub in ("DEFAULT", "HYBRID"):
        blank = home.exec(
            f"timeout -s KILL 3 vpncmd localhost:5555 /SERVER /HUB:{hub} /CMD UserList </dev/null",
            check=False,
        )
        assert "Auth Method" not in blank and "Password:" in blank, blank
    # Flushed: the configuration is on disk, not only in memory.
    assert "L3SW" in home.config_file.read_text()
    # Offloads off on the bridged NIC.
    features = home.exec("ethtool -k eth1")
    assert "tcp-segmentation-offload: off" in features
    assert "tx-checksumming: off" in features


def test_live_reconverge_sends_no_mutating_command(
    testbed: Testbed, home: Node, live_specs: NodeSpecs
) -> None:
    transport = testbed.transport(home)
    result = Session(transport, live_specs.server).converge()
    assert not result.changed and result.diff == ""
    assert result.vpncmd_sessions == 1
    sent = sent_commands(transport)
    assert "HubList" in sent
    assert [c for c in sent if c not in v.READ_ONLY] == []
    assert only_reads(transport)
    assert transport.connects == 1


def by_hand(node: Node, password: str, script: str) -> str:
    """What an operator would do: run a vpncmd script inside the node."""
    node.exec(f"cat > /tmp/hc-drift.in <<'EOF'\n{script}EOF")
    out = node.exec(
        f"printf '%s\\n' '{password}' > /tmp/hc-drift.pw; "
        "timeout -s KILL 10 vpncmd localhost:5555 /SERVER /IN:/tmp/hc-drift.in < /tmp/hc-drift.pw; "
        "rm -f /tmp/hc-drift.in /tmp/hc-drift.pw",
        check=False,
    )
    return out


def test_live_drift_deleted_user_route_and_hub_are_repaired_exactly(
    testbed: Testbed, home: Node, live_specs: NodeSpecs
) -> None:
    pw = live_specs.server.admin_password.get_secret_value()
    out = by_hand(
        home,
        pw,
        "Hub DEFAULT\nUserDelete operator\nHub\nRouterStop L3SW\n"
        "RouterTableDel L3SW /NETWORK:192.168.21.0/255.255.255.0 /GATEWAY:192.168.10.2 /METRIC:1\n"
        "RouterStart L3SW\n",
    )
    assert "Error occurred" not in out, out
    result = Session(testbed.transport(home), live_specs.server).converge()
    assert result.diff.splitlines() == [
        "~ hub DEFAULT: hub admin password",  # its only user's note was the proof
        "+ user DEFAULT/operator",
        "~ L3 switch L3SW: stop for changes",
        "+ L3 L3SW route 192.168.21.0/24 via 192.168.10.2",
        "~ L3 switch L3SW: start",
    ]

    out = by_hand(home, pw, "HubDelete HYBRID\n")
    assert "Error occurred" not in out, out
    result = Session(testbed.transport(home), live_specs.server).converge()
    lines = result.diff.splitlines()
    assert lines[0] == "+ hub HYBRID"
    assert {
        "+ user HYBRID/hybrid-vpc",
        "+ user HYBRID/hybrid-vnet",
        "~ hub HYBRID: DisableUdpAcceleration -> 1",
    } <= set(lines)
    assert all("HYBRID" in ln or "L3SW" in ln for ln in lines), lines
    again = Session(testbed.transport(home), live_specs.server).converge()
    assert not again.changed


def test_live_drift_additions_are_removed_exactly(
    testbed: Testbed, home: Node, live_specs: NodeSpecs
) -> None:
    pw = live_specs.server.admin_password.get_secret_value()
    out = by_hand(
        home,
        pw,
        "HubCreate EXTRA /PASSWORD:\nHub HYBRID\n"
        "UserCreate intruder /GROUP:none /REALNAME:none /NOTE:none\nHub\n"
        "ListenerCreate 8443\nRouterStop L3SW\n"
        "RouterTableAdd L3SW /NETWORK:192.0.2.0/255.255.255.0 /GATEWAY:192.168.10.9 /METRIC:1\n"
        "RouterStart L3SW\n",
    )
    assert "Error occurred" not in out, out
    result = Session(testbed.transport(home), live_specs.server).converge()
    assert result.diff.splitlines() == [
        "- listener TCP 8443",
        "- user HYBRID/intruder",
        "~ L3 switch L3SW: stop for changes",
        "- L3 L3SW route 192.0.2.0/24 via 192.168.10.9",
        "~ L3 switch L3SW: start",
    ]  # hub EXTRA is not the stack's: left alone (ServerSpec.prune_hubs is off)
    assert not Session(testbed.transport(home), live_specs.server).converge().changed
    assert "EXTRA" in by_hand(home, pw, "HubList\n")


def test_live_bridge_cascades_online_and_carries_traffic(
    testbed: Testbed, home: Node, aws: Node, live_specs: NodeSpecs
) -> None:
    spec = live_specs.bridges["Hybrid-VPC"]
    transport = testbed.transport(aws)
    with cmdline_sampler() as cmdlines:
        result = Session(transport, spec).converge()
    assert result.changed and result.traffic_checked
    # The cascade password (and the bridge's admin password) never reached a command line.
    assert any("vpncmd" in c for c in cmdlines)
    assert [s for s in spec.secrets() if any(s in c for c in cmdlines)] == []
    node, host = Session(testbed.transport(aws), spec).get_state()
    cascade = node.hubs["bridge"].cascade("HYBRID")
    assert cascade is not None and cascade.established, cascade
    assert (cascade.server, cascade.remote_hub, cascade.username) == (
        home.host,
        "HYBRID",
        "hybrid-vpc",
    )
    # The home server's certificate is pinned: the cascade verifies it.
    assert cascade.verify_cert and cascade.cert_sha1 == spec.cascades[0].server_cert_sha1
    assert [(b.hub, b.device, b.status) for b in node.bridges] == [
        ("BRIDGE", "vpntap", "Operating")
    ]
    assert host is not None
    assert IPv4Interface("192.168.10.2/24") in host.addresses
    assert (IPv4Network("192.168.30.0/24"), IPv4Address("192.168.10.1")) in host.routes
    assert host.ip_forward
    assert (
        "ip route replace 192.168.1.0/24 via 192.168.10.1"
        in (aws.unit_dir / "hybrid-bridge-net.service").read_text()
    )
    # Traffic, checked independently of the session: the home L3 switch answers over the tap.
    ping = aws.exec("ping -n -c 3 -i 0.3 -W 1 -w 10 -I tap_vpntap 192.168.10.1", check=False)
    assert " 0 received" not in ping and "received" in ping, ping
    # And the server sees the bridge's session in hub HYBRID.
    sessions = by_hand(
        home, live_specs.server.admin_password.get_secret_value(), "Hub HYBRID\nSessionList\n"
    )
    assert "hybrid-vpc" in sessions

    again_t = testbed.transport(aws)
    again = Session(again_t, spec).converge()
    assert not again.changed and again.vpncmd_sessions == 1
    assert [c for c in sent_commands(again_t) if c not in v.READ_ONLY] == []
    assert only_reads(again_t)


def test_live_bridge_os_drift_is_repaired(
    testbed: Testbed, aws: Node, live_specs: NodeSpecs
) -> None:
    spec = live_specs.bridges["Hybrid-VPC"]
    assert spec.host_os is not None
    # The tap watcher would put these back by itself within a second (test_lab_faults): it is
    # stopped first, so the reconciler is what repairs them (and starts it again).
    aws.exec(f'kill -- "-$(cat {hostos.watch_pid_file(spec.host_os)})"')
    aws.exec("ip address flush dev tap_vpntap; ip route del 192.168.1.0/24 || true")
    result = Session(testbed.transport(aws), spec, verify_traffic="always").converge()
    assert result.diff.splitlines() == [
        "+ tap_vpntap address 192.168.10.2/24",
        "+ route 192.168.1.0/24 via 192.168.10.1 dev tap_vpntap",
        "+ route 192.168.30.0/24 via 192.168.10.1 dev tap_vpntap",
        "+ route 192.168.31.0/24 via 192.168.10.1 dev tap_vpntap",
        f"~ tap watcher {hostos.watch_unit_name(spec.host_os)}: (re)start",
    ]
    assert result.traffic_checked and not result.restarted


def test_live_bridge_without_traffic_is_restarted_and_recovers(
    testbed: Testbed, aws: Node, live_specs: NodeSpecs
) -> None:
    spec = live_specs.bridges["Hybrid-VPC"]
    # The cascade stays "established" but the data path is dead (here: the tap is down, as
    # with the OpenSSL-3 defect nothing would pass). A restart re-creates the tap; the session
    # then re-applies the OS side and proves traffic again.
    aws.exec("ip link set tap_vpntap down")
    before = aws.softether_pid()
    session = Session(testbed.transport(aws), spec)
    assert session.ensure_traffic() is True
    assert aws.softether_pid() != before
    assert session.traffic_ok()
    assert not Session(testbed.transport(aws), spec).converge().changed


def test_live_wrong_admin_password_fails_fast_and_clearly(
    testbed: Testbed, home: Node, live_specs: NodeSpecs
) -> None:
    wrong = live_specs.server.model_copy(update={"admin_password": SecretStr("not-the-password")})
    start = time.monotonic()
    with pytest.raises(AccessDeniedError) as err:
        Session(testbed.transport(home), wrong).converge()
    elapsed = time.monotonic() - start
    assert elapsed < 15
    assert home.host in str(err.value) and "access denied" in str(err.value)
    assert "not-the-password" not in str(err.value)
    # The spinning vpncmd was killed, not left behind (looked for in this node's namespace only:
    # the PID namespace is the machine's).
    def vpncmd_running() -> bool:
        return any(comm(pid) == "vpncmd" for pid in pids_in(home.netns))

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and vpncmd_running():
        time.sleep(0.2)
    assert not vpncmd_running()


def test_live_unreachable_host_fails_after_retry_deadline(testbed: Testbed, home: Node) -> None:
    transport = testbed.transport(home, deadline=3.0)
    transport.port = 2222  # nothing listens there: connection refused on every attempt
    start = time.monotonic()
    with pytest.raises(HostUnreachable) as err:
        transport.run("true", timeout=5)
    elapsed = time.monotonic() - start
    assert 2.0 <= elapsed < 8.0
    assert f"{home.host}:2222" in str(err.value)
    assert "attempts" in str(err.value)


def test_live_changed_host_key_is_refused_naming_both_fingerprints(
    testbed: Testbed, home: Node, tmp_path: Path
) -> None:
    from lab.proc import sh
    from softether.transport import fingerprint, parse_public_key

    for kind in ("ed25519", "ecdsa"):
        key = tmp_path / f"other_{kind}"
        sh("ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key))
        other = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        transport = testbed.transport(home, host_key=other)
        with pytest.raises(HostKeyRefused) as err:
            transport.run("true", timeout=5)
        msg = str(err.value)
        assert home.host in msg
        assert fingerprint(parse_public_key(other)) in msg
        if kind == "ed25519":
            assert fingerprint(parse_public_key(home.host_key)) in msg
        assert transport.records == []  # nothing ran


def test_live_cli_plan_and_apply(
    testbed: Testbed, home: Node, aws: Node, live_specs: NodeSpecs, tmp_path: Path
) -> None:
    """`python -m softether` by hand, run from the bridge's namespace against the server."""
    import subprocess
    import sys

    spec = tmp_path / "spec.json"
    spec.write_text(live_specs.server.to_json(reveal=True))
    spec.chmod(0o600)
    ident = tmp_path / "id"
    ident.write_text(testbed.client_key)
    ident.chmod(0o600)
    repo = Path(__file__).resolve().parents[2]

    def cli(action: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "softether", action, "--spec", str(spec)]
        argv += ["--host", home.host, "--host-key", home.host_key, "--identity", str(ident)]
        return subprocess.run(
            ["ip", "netns", "exec", aws.netns, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=repo,
            check=False,
        )

    converged = cli("plan")
    assert (converged.returncode, converged.stdout.strip()) == (0, "converged: no changes")
    by_hand(
        home,
        live_specs.server.admin_password.get_secret_value(),
        "Hub DEFAULT\nUserDelete operator\n",
    )
    drift = cli("plan")
    repair = "~ hub DEFAULT: hub admin password\n+ user DEFAULT/operator"
    assert (drift.returncode, drift.stdout.strip()) == (2, repair)
    applied = cli("apply")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == repair
    assert "vpncmd session(s)" in applied.stderr
    out = converged.stdout + drift.stdout + drift.stderr + applied.stdout + applied.stderr
    assert [s for s in live_specs.server.secrets() if s in out] == []


def test_live_local_transport_reads_the_node_from_inside(home: Node, live_specs: NodeSpecs) -> None:
    """The same session over LocalTransport, entering the node's namespaces with nsenter."""
    from softether.transport import LocalTransport

    t = LocalTransport(host=home.name, prefix=home.nsenter())
    session = Session(t, live_specs.server)
    assert session.compare().empty
    assert session.runner.sessions == 1


def test_live_softether_processes_preload_the_compat_library_for_debian_only(
    testbed: Testbed, home: Node, aws: Node
) -> None:
    """Every SoftEther process (watchdog and worker) of both nodes, by /proc/PID/environ."""
    procs = [p for n in (home, aws) for p in softether_processes(n)]
    assert len(procs) >= 4, procs  # a watchdog and a worker per node
    debian = testbed.softether_label.startswith("debian")
    for exe, env in procs:
        preload = [v for v in env if v.startswith("LD_PRELOAD=")]
        assert exe.startswith("/usr/libexec/" if debian else "/usr/local/libexec/"), exe
        assert preload == ([f"LD_PRELOAD={testbed.compat}"] if debian else []), (exe, preload)


def test_live_server_restart_cascade_recovers_by_itself(
    testbed: Testbed, home: Node, aws: Node, live_specs: NodeSpecs
) -> None:
    """The upstream build (or Debian's with the OpenSSL-3 shim preloaded, lab/node.py): the
    bridge's cascade carries traffic again after the home server restarts, without
    restarting the bridge (Debian's build alone stays dead: see test_live_defect.py)."""
    assert (testbed.compat is not None) == testbed.softether_label.startswith("debian")
    bridge = live_specs.bridges["Hybrid-VPC"]
    Session(testbed.transport(home), live_specs.server).converge()
    Session(testbed.transport(aws), bridge, verify_traffic="always").converge()
    bridge_pid = aws.softether_pid()
    home.exec(
        f"{home.softether_command('stop')} >/dev/null; {home.softether_command('start')} >/dev/null"
    )
    session = Session(testbed.transport(aws), bridge)
    deadline = time.monotonic() + 45
    while not session.traffic_ok():
        assert time.monotonic() < deadline, "no traffic 45 s after the server restarted"
    assert aws.softether_pid() == bridge_pid
