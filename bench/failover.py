"""Benchmark: a bridge pair's failover time on five faults (issue 22), printed, not asserted.

In the failover test bed (lab/failover_bed.py: the real controller, the lab driver moving
the site router's routes, frame relays for the cascades), each fault goes into the active
bridge and the time runs from the fault to the connectivity check green again (home LAN
host <-> site host, both ways, through the vip and the moved routes), with the other bridge
active or, where the bridge repaired the fault itself, after the check was seen red. Between faults the fault is undone and the pair settles (failback to the preferred
bridge after `recover_after` green rounds; reported on stderr). `--steady S` first watches
the pair for S seconds and reports role changes (a flap is any). Needs root.

    python bench/failover.py [--interval 1.0] [--fail-after 3] [--recover-after 10] [--steady 0]
    python bench/failover.py --stack ha [--site Hybrid-VPC]   # a running lab with bridge pairs

With `--stack`, the sides are a paired site's two booted bridges of the running lab
(`hybrid lab up --stack ha`; its controllers as configured by the stack) and the check is a
home LAN host <-> the site's first host, one ping each way. A booted bridge repairs two of
the faults itself (systemd restarts a killed vpnbridge, the bridge's OS unit puts a removed
tap address back) before the standby's 3 rounds: their lines name the active bridge as the
one that carried the site again (no failover was needed).

Output: one line per fault, `<fault>: <seconds> s`, then `worst: <seconds> s`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collections.abc import Callable
from ipaddress import IPv4Address

from lab.failover import Side, run_faults, settle
from lab.failover_bed import Bed
from lab.layout import SERVER_PUBLIC
from lab.proc import in_ns, run
from lab.state import remove_dirs
from lab.vm import VmNode
from topology.model import TAP_NAME, TAP_PREFIX, interface

ROOT = Path("/run/hybrid-failover-bench")


def watch(sides: tuple[Side, Side], seconds: float) -> int:
    """Role changes of either bridge during `seconds` (sampled every 0.2 s)."""
    last, changes = [s.role() for s in sides], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = [s.role() for s in sides]
        changes += sum(a != b for a, b in zip(last, now, strict=True))
        last = now
        time.sleep(0.2)
    return changes


def lab_pair(ref: str, site: str | None) -> tuple[tuple[Side, Side], Callable[[], bool]]:
    """The two bridges of a paired site of the running lab `ref` as the faults' sides, and
    its connectivity check."""
    from lab.lab import open_lab

    lab = open_lab(ref)
    net = lab.stack.network
    paired = next(s for s in net.sites if s.bridge.pair and site in (None, s.name))
    lan = next(c for c in net.home.cidrs if net.home.vpn_server.lan_address in c)

    def side(node: str, role: str, address: IPv4Address) -> Side:
        vm = lab.nodes[node]
        assert isinstance(vm, VmNode)
        leader = vm.vm.leader()
        inside = ["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p"]
        return Side(
            name=role,
            netns=vm.netns,
            tap=TAP_PREFIX + TAP_NAME,
            own_address=interface(address, net.transit.cidr),
            state_file=Path(f"/proc/{leader}/root/run/hybrid-failover/state.json"),
            server=(SERVER_PUBLIC.ip, net.home.vpn_server.port),
            home=lan,
            softether_pids=lambda: [p for p in [vm.softether_pid()] if p],
            restart_softether=lambda: _restart(inside),
        )

    a, b = (side(vm.node, vm.role or "a", vm.transit_address) for vm in paired.bridge_vms)
    home = next(h for h in lab.layout.hosts if h.site == net.home.name)
    there = next(h for h in lab.layout.hosts if h.site == paired.name)

    def green() -> bool:
        return _answers(home.ns, there.address) and _answers(there.ns, home.address)

    return (a, b), green


def _restart(inside: list[str]) -> None:
    """What the unit's Restart= does after a kill, inside the booted machine."""
    run([*inside, "systemctl", "restart", "softether-vpnbridge.service"], timeout=30)


def _answers(ns: str, address: object) -> bool:
    """One ping from namespace `ns` to `address` answered within 1 s."""
    done = subprocess.run(in_ns(ns, "ping", "-n", "-q", "-c1", "-W1", str(address)), capture_output=True, timeout=5, check=False)
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A bridge pair's failover time on five faults (issue 22).")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--fail-after", type=int, default=3)
    ap.add_argument("--recover-after", type=int, default=10)
    ap.add_argument("--wait", type=float, default=30.0, help="give up on a fault after this")
    ap.add_argument("--steady", type=float, default=0.0, help="watch the pair this long first")
    ap.add_argument("--stack", help="a running lab with bridge pairs (hybrid lab up --stack NAME) instead of the bed")
    ap.add_argument("--site", help="with --stack: the paired site (default: the first)")
    args = ap.parse_args(argv)
    if args.stack:
        return _on_lab(args)
    directory = ROOT / str(time.time_ns())
    try:
        with Bed(directory, args.interval, args.fail_after, args.recover_after) as bed:
            sides = bed.sides()
            if settle(sides, bed.green, 30) is None:
                print("error: the pair did not settle within 30 s", file=sys.stderr)
                return 1
            if args.steady:
                print(f"steady {args.steady:.0f} s: {watch(sides, args.steady)} role changes")
            _report(sides, bed.green, args.wait, bed.preferred)
    finally:
        remove_dirs(directory)
    return 0


def _report(sides: tuple[Side, Side], green: Callable[[], bool], wait_s: float, preferred: str | None) -> None:
    """One line per fault, `<fault>: <seconds> s` (with the bridge that carried the site when
    it was green again: the standby, or the active one repaired in place), then `worst:`."""
    times = []
    for name, took, carrier in run_faults(sides, green, wait_s, say=lambda line: print(line, file=sys.stderr, flush=True), preferred=preferred):
        seconds = f"not within {wait_s:.0f}" if took is None else f"{took:.1f}"
        print(f"{name}: {seconds} s ({carrier} carries the site)", flush=True)
        times.append(took)
    worst = f"not within {wait_s:.0f}" if None in times else f"{max(t for t in times if t is not None):.1f}"
    print(f"worst: {worst} s")


def _on_lab(args: argparse.Namespace) -> int:
    """The five faults on a running lab's pair, with the controllers the stack configured."""
    sides, green = lab_pair(args.stack, args.site)
    if settle(sides, green, 30) is None:
        print("error: the pair did not settle within 30 s", file=sys.stderr)
        return 1
    if args.steady:
        print(f"steady {args.steady:.0f} s: {watch(sides, args.steady)} role changes")
    _report(sides, green, args.wait, "a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
