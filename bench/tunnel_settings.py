"""Benchmark: SoftEther settings of the project's path, each against the current defaults.

One lab of the bench's own with the project's settings (`network.softether` of the dev stack);
TCP home host -> AWS host (iperf3) as in bench/tunnel_peers.py, whose helpers it uses. Each
candidate is applied to the running lab (inside its own namespaces only), measured and
reverted; every round measures the defaults and then each candidate, in alternation, and the
medians are compared. Candidates:

  cipher-aes128  `ServerCipherSet ECDHE-RSA-AES128-GCM-SHA256` on the server and the bridge,
                 cascade reconnected; the cipher really in use is read from CascadeStatusGet
                 (TLS 1.3 suites are not chosen by ServerCipherSet);
  compress-on    `CascadeCompressEnable` (the defaults have it off: checked and printed);
  maxtcp-2/4     `CascadeDetailSet /MAXTCP:n` (the default is `maxConnections` 1);
  noqos          `CascadeDetailSet /NOQOS:yes`;
  mss-1360       `ExtOptionSet AdjustTcpMssValue 1360` on the transit hub and the bridge hub;
  tap-mtu-1400   the bridge's tap at MTU 1400;
  tap-gro-off    GRO and GSO off on the bridge's tap (tx checksum and TSO cannot be turned
                 on: SoftEther's tap has no vnet header, ethtool refuses);
  tap-qlen-10k   the tap's txqueuelen 10000 (default 1000);
  tcp-wmem-16m   net.ipv4.tcp_wmem / tcp_rmem max 16 MiB / 32 MiB in both node namespaces
                 (per-namespace sysctls only; nothing global is changed);
  tcp-wmem-1m    the same with a 1 MiB send buffer maximum.

Printed per candidate: Gbit/s and CPU s/Gbit (the two SoftEther processes on the path, from
/proc) with the ratio to the defaults' medians. `--profile` adds where the CPU goes: the
SoftEther threads' CPU (from /proc/PID/task) during one run of the defaults, and, where perf
works, its cpu-clock samples by binary (kernel, libcrypto, SoftEther). Needs root. Not a
test. Everything it makes is torn down at the end.

    python bench/tunnel_settings.py [--seconds 5] [--repeat 3] [--only NAME,...] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lab_throughput import bench_stack, hosts, quiet
from bench.tunnel_peers import ROOT, TICK, Sample, measure, medians, softether_pids, wait_ping
from lab.down import down
from lab.faults import vpncmd
from lab.lab import Lab, open_lab
from lab.layout import Host
from lab.node import Node
from lab.proc import LabError, in_ns, run
from lab.state import remove_dirs
from lab.up import up
from softether.spec import BRIDGE_HUB
from topology.model import TAP_NAME, TAP_PREFIX

TAP = TAP_PREFIX + TAP_NAME


@dataclass
class ProjectPath:
    """The project's path in the bench's lab: the two hosts and the two SoftEther nodes."""

    lab: Lab
    home: Host
    aws: Host
    server: Node
    bridge: Node
    transit: str
    work: Path

    def on_server(self, *command: str, hub: str | None = None) -> str:
        return vpncmd(self.lab, self.lab.stack.network.home.name, *command, hub=hub)

    def on_bridge(self, *command: str, hub: str | None = None) -> str:
        return vpncmd(self.lab, self.aws.site, *command, hub=hub)

    def cascade(self, command: str, *args: str) -> str:
        return self.on_bridge(command, self.transit, *args, hub=BRIDGE_HUB)

    def reconnect(self) -> None:
        """Cascade offline and online again; back when the tunnel carries traffic."""
        self.cascade("CascadeOffline")
        self.cascade("CascadeOnline")
        time.sleep(1.0)  # the old session's ping answer must not count
        wait_ping(self.home.ns, str(self.aws.address), "the reconnected cascade", self.work, 60.0)

    def status(self, item: str) -> str:
        """One line of CascadeStatusGet (e.g. "Encryption"), its value."""
        for line in self.cascade("CascadeStatusGet").splitlines():
            name, _, value = line.partition("|")
            if name.strip() == item:
                return value.strip()
        return "?"

    def node_namespaces(self) -> list[str]:
        return [self.server.netns, self.bridge.netns]

    def sample(self, seconds: int) -> Sample:
        pids = softether_pids(self.node_namespaces())
        return measure(self.home, self.aws, str(self.aws.address), seconds, pids)


@dataclass
class Candidate:
    name: str
    apply: Callable[[], None]
    revert: Callable[[], None]


def detail(p: ProjectPath, maxtcp: int, noqos: bool) -> Callable[[], None]:
    # The flags softether/plan.py sends, with this candidate's values.
    def go() -> None:
        p.cascade(
            "CascadeDetailSet",
            f"/MAXTCP:{maxtcp}",
            "/INTERVAL:1",
            "/TTL:0",
            "/HALF:no",
            f"/NOQOS:{'yes' if noqos else 'no'}",
        )
        p.reconnect()

    return go


def cipher(p: ProjectPath, name: str) -> Callable[[], None]:
    def go() -> None:
        p.on_server("ServerCipherSet", name)
        p.on_bridge("ServerCipherSet", name)
        p.reconnect()

    return go


def mss(p: ProjectPath, value: int) -> Callable[[], None]:
    def go() -> None:
        p.on_server("ExtOptionSet", "AdjustTcpMssValue", f"/VALUE:{value}", hub=p.transit)
        p.on_bridge("ExtOptionSet", "AdjustTcpMssValue", f"/VALUE:{value}", hub=BRIDGE_HUB)

    return go


def compress(p: ProjectPath, on: bool) -> Callable[[], None]:
    def go() -> None:
        p.cascade("CascadeCompressEnable" if on else "CascadeCompressDisable")
        p.reconnect()

    return go


def tap(p: ProjectPath, *argv: str) -> Callable[[], None]:
    def go() -> None:
        run(in_ns(p.bridge.netns, *argv))

    return go


def sysctls(name: str, p: ProjectPath, values: dict[str, str]) -> Candidate:
    """Per-namespace sysctls in both node namespaces; reverted to what each had."""
    before: dict[tuple[str, str], str] = {}

    def go() -> None:
        for ns in p.node_namespaces():
            for key, value in values.items():
                before[ns, key] = run(in_ns(ns, "sysctl", "-n", key)).strip()
                run(in_ns(ns, "sysctl", "-qw", f"{key}={value}"))

    def back() -> None:
        for (ns, key), value in before.items():
            run(in_ns(ns, "sysctl", "-qw", f"{key}={value}"))

    return Candidate(name, go, back)


def candidates(p: ProjectPath) -> list[Candidate]:
    offload = ("ethtool", "-K", TAP)
    return [
        Candidate(
            "cipher-aes128", cipher(p, "ECDHE-RSA-AES128-GCM-SHA256"), cipher(p, "~DEFAULT~")
        ),
        Candidate("compress-on", compress(p, True), compress(p, False)),
        Candidate("maxtcp-2", detail(p, 2, False), detail(p, 1, False)),
        Candidate("maxtcp-4", detail(p, 4, False), detail(p, 1, False)),
        Candidate("noqos", detail(p, 1, True), detail(p, 1, False)),
        Candidate("mss-1360", mss(p, 1360), mss(p, 0)),
        Candidate(
            "tap-mtu-1400",
            tap(p, "ip", "link", "set", TAP, "mtu", "1400"),
            tap(p, "ip", "link", "set", TAP, "mtu", "1500"),
        ),
        Candidate(
            "tap-gro-off",
            tap(p, *offload, "gro", "off", "gso", "off"),
            tap(p, *offload, "gro", "on", "gso", "on"),
        ),
        Candidate(
            "tap-qlen-10k",
            tap(p, "ip", "link", "set", TAP, "txqueuelen", "10000"),
            tap(p, "ip", "link", "set", TAP, "txqueuelen", "1000"),
        ),
        sysctls(
            "tcp-wmem-16m",
            p,
            {
                "net.ipv4.tcp_wmem": "4096 131072 16777216",
                "net.ipv4.tcp_rmem": "4096 131072 33554432",
            },
        ),
        sysctls("tcp-wmem-1m", p, {"net.ipv4.tcp_wmem": "4096 16384 1048576"}),
    ]


def facts(p: ProjectPath) -> None:
    """What the defaults run with, as SoftEther and the kernel report it."""
    print(
        f"cascade: {p.status('Encryption')}; compression: {p.status('Use of Compression')}; "
        f"TCP connections {p.status('Number of TCP Connections')} "
        f"(max {p.status('Maximum Number of TCP Connections')})"
    )
    link = run(["ip", "-n", p.bridge.netns, "-d", "link", "show", TAP]).split()
    mtu, qlen = link[link.index("mtu") + 1], link[link.index("qlen") + 1]
    k = run(in_ns(p.bridge.netns, "ethtool", "-k", TAP)).splitlines()
    offloads = [
        x.strip()
        for x in k
        if x.split(":")[0]
        in {
            "tx-checksumming",
            "tcp-segmentation-offload",
            "generic-segmentation-offload",
            "generic-receive-offload",
        }
    ]
    print(f"tap {TAP}: mtu {mtu}, txqueuelen {qlen}; {', '.join(offloads)}")
    for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_congestion_control"):
        print(f"{key} (node namespaces): {run(in_ns(p.bridge.netns, 'sysctl', '-n', key)).strip()}")


def thread_cpu(pids: list[int]) -> dict[tuple[int, int, str], float]:
    """CPU seconds per thread: (pid, tid, comm) -> utime+stime."""
    out: dict[tuple[int, int, str], float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                head, _, rest = (task / "stat").read_text().rpartition(")")
            except OSError:
                continue
            fields = rest.split()
            out[pid, int(task.name), head.split("(", 1)[1]] = (
                int(fields[11]) + int(fields[12])
            ) / TICK
    return out


def profile(p: ProjectPath, seconds: int) -> None:
    pids = softether_pids(p.node_namespaces())
    role = {pid: ns for ns in p.node_namespaces() for pid in softether_pids([ns])}
    perf = None
    if shutil.which("perf"):  # software clock samples: this VM has no hardware counters
        data = p.work / "perf.data"
        argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "-o", str(data)]
        argv += ["-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)]
        perf = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = thread_cpu(pids)
    s = p.sample(seconds)
    after = thread_cpu(pids)
    used = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    total = sum(u for u, _ in used)
    print(
        f"profile: defaults {s.gbps:.2f} Gbit/s over {seconds} s; SoftEther CPU {total:.2f} s "
        f"({total / seconds:.2f} cores); busiest threads:"
    )
    for u, (pid, tid, comm) in used[:6]:
        print(f"  {role[pid]} {comm} tid {tid}: {u:.2f} s ({u / seconds:.0%} of a core)")
    if perf is not None:
        perf.wait(timeout=seconds + 30)
        for sort, what in (("comm,dso", "by binary"), ("comm,sym", "by function")):
            argv = ["perf", "report", "-i", str(p.work / "perf.data"), "--stdio", "-q"]
            out = run([*argv, "--sort", sort], timeout=120)
            print(f"perf (cpu-clock samples of the SoftEther processes, {what}):")
            for line in [x for x in out.splitlines() if x.strip()][:12]:
                print(f"  {line.strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated candidate names")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    root = ROOT / secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    path = work / "project" / "Pulumi.project.yaml"
    path.parent.mkdir(parents=True)
    results: dict[str, list[Sample]] = {}
    try:
        r = up(str(bench_stack({}, path)), say=quiet, root=root)
        if not r.matrix_ok:
            raise SystemExit("the lab's matrix is not green")
        lab = open_lab(str(path), root)
        home, aws = hosts(lab.layout)
        net = lab.stack.network
        p = ProjectPath(
            lab,
            home,
            aws,
            lab.nodes[net.home.name],
            lab.nodes[aws.site],
            net.transit.hub,
            work,
        )
        print(f"lab up in {r.seconds:.1f} s; {home.site} {home.ns} -> {aws.site} {aws.ns}")
        facts(p)
        chosen = [c for c in candidates(p) if not args.only or c.name in args.only.split(",")]
        results = {"defaults": [], **{c.name: [] for c in chosen}}
        print(f"{args.repeat} rounds x {len(results)} x {args.seconds} s, in alternation")
        for _ in range(args.repeat):
            results["defaults"].append(p.sample(args.seconds))
            for c in list(chosen):
                try:
                    c.apply()
                except LabError as e:  # e.g. a feature the tap does not have
                    print(f"  {c.name}: cannot be applied here: {e}")
                    chosen.remove(c)
                    del results[c.name]
                    with contextlib.suppress(LabError):
                        c.revert()
                    continue
                try:
                    if c.name.startswith(("cipher", "maxtcp")):
                        print(
                            f"  {c.name}: cascade {p.status('Encryption')}, TCP connections "
                            f"{p.status('Number of TCP Connections')}"
                        )
                    results[c.name].append(p.sample(args.seconds))
                finally:
                    c.revert()
        if args.profile:
            profile(p, args.seconds)
    finally:
        if path.exists():
            down(str(path), say=quiet, root=root)
        remove_dirs(root)
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    return 0


def report(results: dict[str, list[Sample]]) -> None:
    gbps, cpu = medians(results)
    if "defaults" not in gbps:
        return
    g0, c0 = gbps["defaults"], cpu["defaults"]
    print(f"{'setting':>13} {'Gbit/s':>7} {'x dflt':>6} {'CPU s/Gbit':>10} {'x dflt':>6}  samples")
    for k, v in results.items():
        if v:
            print(
                f"{k:>13} {gbps[k]:7.2f} {gbps[k] / g0:6.2f} {cpu[k]:10.2f} {cpu[k] / c0:6.2f}  "
                f"{' '.join(f'{s.gbps:.2f}' for s in v)}"
            )


if __name__ == "__main__":
    sys.exit(main())
