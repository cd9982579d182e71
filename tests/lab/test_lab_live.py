"""The reference network end to end on this machine: up, checks, re-apply, faults, down.

Tests run in file order on one lab (module fixture); figures are printed (pytest -s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from lab import faults
from lab.checks import checks
from lab.down import down
from lab.lab import open_lab, specs
from lab.layout import PUBLIC_IF
from lab.proc import alive, exists
from lab.state import LabState
from lab.status import matrix, status, wait_for_matrix
from lab.tls_capture import capture_server_hellos
from lab.up import up
from softether.errors import SoftEtherError
from softether.spec import DEFAULT_RESTART

from ..softether.helpers import softether_processes
from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

RECOVERY_S = 60.0


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningLab]:
    yield from lab_fixture("dev")


def test_lab_up_dev_ends_with_green_matrix(dev: RunningLab) -> None:
    r = dev.report
    print(f"lab up: {r.seconds:.2f} s total, network green after {r.network_seconds:.2f} s")
    assert r.matrix_ok
    # A fresh lab: every node was configured through softether over SSH.
    assert all(res.changed for res in r.results.values())
    assert r.mutating > 0


def test_lab_nodes_run_the_stacks_softether_release_without_preload(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    options = lab.stack.network.softether
    assert options.source == "upstream"
    label = f"upstream {options.upstream_tag} {options.upstream_commit[:8]}"
    for node in lab.nodes.values():
        procs = softether_processes(node)
        assert len(procs) >= 2, (node.name, procs)  # SoftEther's watchdog and its worker
        for exe, env in procs:
            assert exe == f"/usr/local/libexec/softether/vpn{node.kind}/vpn{node.kind}"
            assert [v for v in env if v.startswith("LD_PRELOAD=")] == [], (node.name, exe)
    lines: list[str] = []
    status(dev.ref, say=lines.append, root=dev.root)
    shown = [x for x in lines if "/softether " in x]
    assert len(shown) == len(lab.nodes)
    assert all(x.endswith(f"installed SoftEther: {label}") for x in shown), shown


def test_lab_cascades_negotiate_softethers_first_tls_group(dev: RunningLab) -> None:
    """X25519MLKEM768 heads SoftEther's PQ_GROUP_LIST: two 5.2 nodes with every liboqs
    algorithm pick it, so must the build with the minimal set (components/cloudinit.py)."""
    lab = open_lab(dev.ref, dev.root)
    home = lab.nodes[lab.stack.network.home.name]

    def restart_and_wait() -> None:  # every bridge's cascade reconnects
        faults.restart_server(lab)
        assert wait_for_matrix(lab.layout, RECOVERY_S)[0]

    hellos = capture_server_hellos(home.netns, PUBLIC_IF, restart_and_wait, RECOVERY_S + 15)
    assert len({h.source for h in hellos}) >= 1, "no ServerHello seen while the cascades reconnected"
    assert {(h.tls13, h.group_name) for h in hellos} == {(True, "X25519MLKEM768")}


def test_lab_reup_sends_no_mutating_command(dev: RunningLab) -> None:
    r = up(dev.ref, say=print, root=dev.root)
    print(f"re-apply: {r.seconds:.2f} s")
    assert r.matrix_ok
    assert r.mutating == 0
    assert not any(res.changed for res in r.results.values())


def test_lab_test_cli_passes_every_check(
    dev: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_LAB_DIR", str(dev.root))
    rc = main(["lab", "test", "--stack", dev.ref])
    out = capsys.readouterr().out
    print(out)
    assert [ln for ln in out.splitlines() if ln.startswith("FAIL")] == []
    assert rc == 0
    assert (
        "PASS  database stopped -> WordPress shows 'Error establishing a database connection'"
        in out
    )
    assert "PASS  Hybrid-VPC: cascade established" in out
    assert main(["lab", "status", "--stack", dev.ref]) == 0


def test_lab_server_restart_recovers_by_itself(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    faults.restart_server(lab)
    t0 = time.monotonic()
    green, seconds = wait_for_matrix(lab.layout, RECOVERY_S)
    print(f"home vpnserver restart: full matrix again after {time.monotonic() - t0:.1f} s")
    assert green, f"no full matrix {seconds:.0f} s after restarting the home server"


def test_lab_bridge_internet_link_down_10s_recovers(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    site = lab.stack.network.sites[0].name
    faults.link_down(lab, site, 10.0)
    # While the link is down the site is cut off; after link-up it must come back by itself.
    t0 = time.monotonic()
    green, _ = wait_for_matrix(lab.layout, RECOVERY_S)
    print(
        f"{site} internet link down 10 s: full matrix {time.monotonic() - t0:.1f} s after link-up"
    )
    assert green


def test_lab_ssh_killed_mid_converge_rerun_converges(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    site = lab.stack.network.sites[-1].name
    faults.delete_cascade(lab, site)
    killer = faults.SshKiller(lab.nodes[site], nth=2).start()  # 2nd vpncmd: the apply
    with pytest.raises(SoftEtherError):
        up(dev.ref, say=print, root=dev.root)
    killer.join()
    assert killer.killed, "no SSH session was killed"
    again = up(dev.ref, say=print, root=dev.root)
    assert again.matrix_ok
    left = [c.line() for c in checks(dev.ref, dev.root) if not c.ok]
    assert left == []


def test_lab_deleted_l3_switch_is_repaired_by_up(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    faults.delete_l3_switch(lab)
    assert not all(p.ok for p in matrix(lab.layout, deadline_s=2))
    r = up(dev.ref, say=print, root=dev.root)
    home = lab.stack.network.home.name
    assert r.results[home].changed
    assert lab.stack.network.home.vpn_server.l3_switch in r.results[home].diff
    assert r.matrix_ok


def test_lab_down_twice_leaves_nothing(dev: RunningLab) -> None:
    st = LabState.load(dev.directory)
    assert st is not None
    pids = list(st.pids.values())
    namespaces = list(st.namespaces)
    assert down(dev.ref, say=print, root=dev.root) == 0
    assert [n for n in namespaces if exists(n)] == []
    assert [p for p in pids if alive(p)] == []
    assert not Path(dev.directory).exists()
    assert not dev.root.exists()  # the lab root is removed once empty
    assert down(dev.ref, say=print, root=dev.root) == 0


def test_lab_bridge_specs_restart_the_bridge_process(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    for spec in specs(lab, create=True).bridges.values():  # the lab is down by now
        assert spec.restart_command == DEFAULT_RESTART  # the booted bridge's, as on the VM
