"""Faults a real user causes to a running lab (issue 15), in file order on one lab: kill -9
of every daemon, a crashed bridge worker, drift made by hand (a hub Offline, a user password
changed on the server), a stopped database, corrupt records, a namespace deleted by hand.

Each test asserts its own outcome; figures are printed (pytest -s). Bounds are generous
(a shared machine), not speed goals: bench/lab_faults.py measures those.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import faults
from lab.checks import checks
from lab.lab import open_lab, specs
from lab.proc import NETNS_DIR, alive, comm, pids_in
from lab.state import LabState
from lab.status import wait_for_matrix
from lab.up import up
from lab.vm import VmNode
from softether.spec import BRIDGE_HUB

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
RECOVERY_S = 60.0


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningLab]:
    yield from lab_fixture("dev")


def cli(lab: RunningLab, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`hybrid lab ...` as the user runs it, on this lab's directory."""
    env = {**os.environ, "HYBRID_LAB_DIR": str(lab.root), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", "lab", *args, "--stack", lab.ref],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
    )  # fmt: skip


def one_line_failure(run: subprocess.CompletedProcess[str], *words: str) -> str:
    assert run.returncode != 0, run.stdout[-1500:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for w in words:
        assert w in lines[0]
    return lines[0]


def kill9(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def softether_pids(lab_ns: str) -> list[int]:
    """The SoftEther watchdog and worker of a node (both vpnserver/vpnbridge processes)."""
    return [p for p in pids_in(lab_ns) if comm(p) in ("vpnserver", "vpnbridge")]


def test_lab_up_restarts_every_dead_daemon(dev: RunningLab) -> None:
    """What the lab runs itself comes back with `lab up`: the home server's SoftEther (the
    user's machine, no service manager in the lab) and a bridge machine that went down
    (booted again: a reboot)."""
    assert dev.report.matrix_ok
    lab = open_lab(dev.ref, dev.root)
    home = lab.stack.network.home.name
    b = lab.stack.network.sites[-1].name
    kill9(softether_pids(lab.nodes[home].netns))  # watchdog and worker: nothing restarts it
    machine = lab.nodes[b]
    assert isinstance(machine, VmNode)
    machine.vm.poweroff()  # the VM stopped
    time.sleep(0.5)
    assert softether_pids(lab.nodes[home].netns) == [] and not machine.vm.running
    t0 = time.monotonic()
    r = up(dev.ref, say=print, root=dev.root)
    print(
        f"up after kill -9 of the home server's SoftEther, a bridge VM off: {time.monotonic() - t0:.1f} s, restarted {r.restarted}"
    )
    assert set(r.restarted) >= {f"{home} softether"}
    again = open_lab(dev.ref, dev.root).nodes[b]
    assert isinstance(again, VmNode) and again.vm.running
    assert r.matrix_ok
    assert [c.line() for c in checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_booted_bridge_restarts_its_own_services(dev: RunningLab) -> None:
    """Inside a booted bridge, systemd restarts what dies, as on the VM: every vpnbridge
    process killed (the unit's Restart=), the listening sshd killed (ssh.service's)."""
    lab = open_lab(dev.ref, dev.root)
    a, b = (lab.nodes[s.name] for s in lab.stack.network.sites)
    before = set(softether_pids(a.netns))
    listener = b.sshd_pid()
    assert before and listener is not None
    kill9([*before, listener])
    t0 = time.monotonic()
    green, took = wait_for_matrix(lab.layout, RECOVERY_S)
    print(
        f"every vpnbridge process and an sshd killed -> full matrix: {time.monotonic() - t0:.1f} s"
    )
    assert green, f"not green {took:.0f} s after systemd should have restarted the bridge"
    assert set(softether_pids(a.netns)) - before
    deadline = time.monotonic() + RECOVERY_S
    while b.sshd_pid() in (None, listener):
        assert time.monotonic() < deadline, "ssh.service was not restarted"
        time.sleep(0.5)
    assert [c.line() for c in checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_up_repairs_namespaces_deleted_by_hand(dev: RunningLab) -> None:
    """Issue 24, defect 8: with a node's namespace deleted, `up` failed ("no pid file after
    5.0 s"): its processes ran on in the unnamed namespace. They are stopped and the node
    (and the database, its namespace deleted too) started again in the new one."""
    lab = open_lab(dev.ref, dev.root)
    node = lab.nodes[lab.stack.network.sites[-1].name]
    assert lab.layout.db is not None
    db_ns = lab.layout.db.ns
    orphans = pids_in(node.netns) + pids_in(db_ns)
    assert orphans
    for ns in (node.netns, db_ns):
        subprocess.run(["ip", "netns", "delete", ns], check=True)
    r = up(dev.ref, say=print, root=dev.root)
    assert r.matrix_ok
    time.sleep(0.5)  # killed processes are reaped by init
    assert [p for p in orphans if alive(p)] == []
    assert [c.line() for c in checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_bridge_worker_crash_recovers_by_itself(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    node = lab.nodes[lab.stack.network.sites[0].name]
    worker = node.softether_pid()
    os.kill(worker, signal.SIGKILL)  # SoftEther's watchdog starts a new worker, a new bare tap
    t0 = time.monotonic()
    green, took = wait_for_matrix(lab.layout, RECOVERY_S)
    print(f"bridge worker crash -> full matrix: {time.monotonic() - t0:.1f} s")
    assert node.softether_pid() != worker
    assert green, f"the site stayed dark for {took:.0f} s after its worker crashed"


@pytest.mark.parametrize("what", ["address", "route"])
def test_lab_tap_address_or_route_deleted_by_hand_comes_back_by_itself(
    what: str, dev: RunningLab
) -> None:
    """Issue 24 (risk): the tap watcher reacted to link events only; a tap address or route
    deleted by hand kept the site dark until `lab up`."""
    lab = open_lab(dev.ref, dev.root)
    site = lab.stack.network.sites[0].name
    h = specs(lab).bridges[site].host_os
    assert h is not None
    node = lab.nodes[site]
    if what == "address":
        node.exec(f"ip address del {h.address} dev {h.device}")
    else:
        for r in h.routes:
            node.exec(f"ip route del {r.network} via {r.via} dev {h.device}")
    t0 = time.monotonic()
    green, took = wait_for_matrix(lab.layout, RECOVERY_S)
    print(f"tap {what} deleted by hand -> full matrix: {time.monotonic() - t0:.1f} s")
    assert green, f"the site stayed dark for {took:.0f} s"


def test_lab_hub_offline_by_hand_is_drift_repaired_by_up(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    home = lab.stack.network.home.name
    nodes = specs(lab)
    hub = nodes.server.hubs[-1].name  # the transit hub every cascade lands in
    assert any(c.remote_hub == hub for b in nodes.bridges.values() for c in b.cascades)
    faults.vpncmd(lab, home, "Offline", hub=hub)
    (match,) = [c for c in checks(dev.ref, dev.root) if c.name.startswith(f"{home}: SoftEther")]
    print(match.line())
    assert not match.ok and f"~ hub {hub}: online" in match.detail
    r = up(dev.ref, say=print, root=dev.root)
    assert f"~ hub {hub}: online" in r.results[home].diff
    assert r.matrix_ok


def test_lab_user_password_changed_on_the_server_is_repaired_by_up(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    home = lab.stack.network.home
    site = lab.stack.network.sites[0].name
    nodes = specs(lab)
    cascade = nodes.bridges[site].cascades[0]
    faults.vpncmd(
        lab, home.name,
        "UserPasswordSet", cascade.username, "/PASSWORD:ChangedByHand1", hub=cascade.remote_hub,
    )  # fmt: skip
    faults.vpncmd(lab, site, "CascadeOffline", cascade.name, hub=BRIDGE_HUB)
    faults.vpncmd(lab, site, "CascadeOnline", cascade.name, hub=BRIDGE_HUB)
    deadline = time.monotonic() + 30
    while "authentication failed" not in faults.vpncmd(lab, site, "CascadeList", hub=BRIDGE_HUB):
        assert time.monotonic() < deadline, "the server never refused the cascade"
        time.sleep(0.5)
    r = up(dev.ref, say=print, root=dev.root)
    assert (
        f"~ user {cascade.remote_hub}/{cascade.username}: password" in r.results[home.name].diff
    )
    assert r.matrix_ok
    assert [c.line() for c in checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_test_on_a_dead_path_does_not_wait_for_pages(dev: RunningLab) -> None:
    """Issue 24 (risk): on a red network `lab test` took 77-139 s, mostly WordPress page
    waits. With the app's site cut off (its cascade offline) the page checks are not tried,
    and the database is not stopped."""
    lab = open_lab(dev.ref, dev.root)
    assert lab.layout.app is not None
    site = lab.layout.app.site
    cascade = specs(lab).bridges[site].cascades[0].name
    db = LabState.load(dev.directory).pids["db"]  # type: ignore[union-attr]
    faults.vpncmd(lab, site, "CascadeOffline", cascade, hub=BRIDGE_HUB)
    try:
        t0 = time.monotonic()
        results = checks(dev.ref, dev.root)
        print(f"lab test on a dead path: {time.monotonic() - t0:.1f} s")
    finally:
        faults.vpncmd(lab, site, "CascadeOnline", cascade, hub=BRIDGE_HUB)
    page = next(c for c in results if c.name.startswith("WordPress answers"))
    print(page.line())
    assert not page.ok and "not tried: the app" in page.detail and "(TCP)" in page.detail
    assert not any("database stopped" in c.name for c in results)
    assert LabState.load(dev.directory).pids["db"] == db  # type: ignore[union-attr]
    assert wait_for_matrix(lab.layout, RECOVERY_S)[0]


def test_lab_up_with_an_unanswering_database_is_one_line(dev: RunningLab) -> None:
    st = LabState.load(dev.directory)
    assert st is not None
    db = st.pids["db"]
    os.kill(db, signal.SIGSTOP)  # TCP still connects; no answer: the app's page times out
    try:
        run = cli(dev, "up")
    finally:
        os.kill(db, signal.SIGCONT)
    print(run.stderr.strip())
    one_line_failure(run, "WordPress", "hybrid lab down")


def test_lab_corrupt_records_are_one_line_and_status_writes_no_secret(dev: RunningLab) -> None:
    record, secrets = dev.directory / "lab.json", dev.directory / "secrets.json"
    good_record, good_secrets = record.read_bytes(), secrets.read_bytes()
    try:
        record.write_bytes(good_record[: len(good_record) // 2])  # truncated
        one_line_failure(cli(dev, "status"), "lab.json")
        one_line_failure(cli(dev, "up"), "lab.json")
        one_line_failure(cli(dev, "outputs"), "lab.json")
        record.write_bytes(good_record)
        secrets.write_bytes(b"\xff not json")
        one_line_failure(cli(dev, "status"), "secrets.json")
        one_line_failure(cli(dev, "outputs"), "secrets.json")
        # A secret missing from the record: status reports it and writes nothing.
        secrets.write_bytes(good_secrets.replace(b'"admin/', b'"gone/', 1))
        before = secrets.read_bytes()
        cli(dev, "status")
        assert secrets.read_bytes() == before
    finally:
        record.write_bytes(good_record)
        secrets.write_bytes(good_secrets)


def test_lab_down_without_record_after_a_namespace_was_deleted_by_hand(dev: RunningLab) -> None:
    st = LabState.load(dev.directory)
    assert st is not None
    lab = open_lab(dev.ref, dev.root)
    node = lab.nodes[lab.stack.network.sites[-1].name]
    orphans = pids_in(node.netns)  # live on in an unnamed namespace once it is deleted
    assert orphans
    subprocess.run(["ip", "netns", "delete", node.netns], check=True)
    (dev.directory / "lab.json").write_text('{"stack": "dev", "lab_id"')  # and a broken record
    run = cli(dev, "down")
    print(run.stdout.strip())
    assert run.returncode == 0, run.stderr
    time.sleep(0.5)  # killed processes are reaped by init
    assert [p for p in [*orphans, *st.pids.values()] if alive(p)] == []
    assert list(NETNS_DIR.glob(f"hc-{st.lab_id}-*")) == []
    assert not dev.directory.exists()
