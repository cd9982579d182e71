"""A lab bridge that is a booted machine: Debian 12, systemd as PID 1, cloud-init from the very
user data of the cloud's bridge VM, inside the bridge's network namespace.

`Machine` is the stand-in for a cloud VM: `systemd-nspawn --boot` of the cached image
(lab/image.py) under a writable layer of its own (overlayfs: the image, then the read-only
layers given, e.g. the lab's prebuilt SoftEther tree, then the machine's own upper layer),
joined to an existing network namespace (the lab's "hypervisor network", configured from
outside like a cloud's). Cloud-init reads its NoCloud seed (`instance-id`, the user data)
from the upper layer. The overlay is mounted in a private mount namespace of the nspawn
process, so it is gone with that process however it ends; nothing is mounted on the host.
Like a VM, `boot` returns at once: the ports refuse while it boots.

`VmNode` is a lab SoftEther node (lab/node.py's interface) whose machine boots from the user
data `components.cloudinit.bridge_cloud_config` renders for the stack: the host key the
lab generates for it, the operator's key. Everything after the boot is the VM's own: cloud-
init installs the units and starts the bridge, systemd restarts it (`Restart=`), the
converge reaches it over SSH like the cloud's, and `systemctl restart` restarts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path

import yaml

from components.cloudinit import HostKey, bridge_cloud_config
from softether.spec import DEFAULT_RESTART
from topology import SoftEtherOptions

from . import image, netns
from .node import Node, Testbed, generate_host_key
from .proc import LabError, alive, comm, kill, kill_all_in, pids_in, send, sh

SEED = "var/lib/cloud/seed/nocloud"
PINNED = "pinned_host_key.pub"  # the key a machine got at its first converge
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POWEROFF_S = 30.0  # a clean shutdown (SoftEther saves its configuration), then SIGKILL
LEADER_WAIT_S = 10.0


@dataclass
class Machine:
    """One lab VM; `directory` holds its layers and console log (one machine, many boots:
    a reboot keeps the upper layer, `delete` removes it)."""

    name: str
    netns: str
    directory: Path
    image: Path
    layers: tuple[Path, ...] = ()  # read-only, above the image
    env: dict[str, str] = field(default_factory=dict)  # the lab's mark, on the nspawn process
    memory_max: int | None = None  # bytes (a cgroup memory limit), for the small sizes
    cpus: str | None = None  # nspawn --cpu-affinity, e.g. "0": one core
    binds: tuple[tuple[Path, str], ...] = ()  # host directory -> path in the machine, read-only
    pid: int | None = None  # the nspawn process

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    def seed(self, instance_id: str, user_data: str, hostname: str) -> None:
        """Write the NoCloud seed into the machine's own layer (a new instance: a first boot)."""
        seed = self.upper / SEED
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
        (seed / "user-data").write_text(user_data)
        os.chmod(seed / "user-data", 0o600)

    def boot(self) -> int:
        """Start the machine (returns at once; it boots in the background)."""
        if alive(self.pid):
            raise LabError(f"machine {self.name} is running already")
        merged, work = self.directory / "merged", self.directory / "work"
        for d in (self.upper, merged, work):
            d.mkdir(parents=True, exist_ok=True)
        lower = ":".join(str(p) for p in (*self.layers, self.image))
        mount = (
            f"mount -t overlay overlay -o lowerdir={lower},upperdir={self.upper},workdir={work}"
            f" {shlex.quote(str(merged))}"
        )
        # nspawn keeps a propagation directory per machine under /run/systemd/nspawn: a
        # tmpfs of this mount namespace keeps it off the host.
        Path("/run/systemd/nspawn").mkdir(parents=True, exist_ok=True)
        nspawn = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
            f"--network-namespace-path=/run/netns/{self.netns}",
            # A VM's root configures its own network (the tap, addresses, routes, nftables);
            # nspawn drops this capability unless it is asked for.
            "--capability=CAP_NET_ADMIN",
            f"--directory={merged}", f"--machine={self.name}",
            *([f"--cpu-affinity={self.cpus}"] if self.cpus else []),
            *(f"--bind-ro={src}:{dst}" for src, dst in self.binds),
        ]  # fmt: skip
        # Its own cgroups (nspawn makes payload/ and supervisor/ inside the one it starts in:
        # two machines in one would share them), with the memory limit of a small size.
        cgroups = self._cgroups()
        if self.memory_max:
            limit = "memory.limit_in_bytes" if "memory" in cgroups else "memory.max"
            (cgroups.get("memory") or cgroups["unified"]).joinpath(limit).write_text(
                str(self.memory_max)
            )
        script = " && ".join(
            [
                *(f"echo $$ > {c}/cgroup.procs" for c in cgroups.values()),
                mount,
                "mount -t tmpfs tmpfs /run/systemd/nspawn",
                # nspawn inside the namespace already: the sysfs it mounts for the machine
                # shows the network namespace it is mounted from (else the host's interfaces).
                f"exec nsenter --net=/run/netns/{self.netns} " + shlex.join(nspawn),
            ]
        )
        with self.console.open("a") as console:
            proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The machine's /proc/sys/net is its own namespace's: writable, as on a VM (the
                # converge turns forwarding on). nspawn leaves it read-only unless told.
                env={**os.environ, **self.env, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )
        self.pid = proc.pid
        return proc.pid

    def _cgroups(self, create: bool = True) -> dict[str, Path]:
        """The machine's own cgroup in each hierarchy it needs, below this process's."""
        wanted = ("unified", "systemd", *(("memory",) if self.memory_max else ()))
        out = {
            k: base / "hybrid-lab" / self.netns for k, base in cgroup_bases().items() if k in wanted
        }
        if create:
            for path in out.values():
                path.mkdir(parents=True, exist_ok=True)
        return out

    def _remove_cgroups(self) -> None:
        for top in self._cgroups(create=False).values():
            remove_cgroup(top)

    @property
    def running(self) -> bool:
        return alive(self.pid)

    @property
    def booted_at(self) -> float:
        """Wall clock of the boot: the start of the nspawn process (0.0 if it is gone)."""
        return started_at(self.pid) if self.pid else 0.0

    def leader(self, wait_s: float = LEADER_WAIT_S) -> int:
        """The host PID of the machine's PID 1 (systemd), once nspawn has started it."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.pid is not None:
                with contextlib.suppress(OSError):
                    children = (
                        Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                    )
                    if children:
                        return int(children[0])
            if not self.running or time.monotonic() >= deadline:
                raise LabError(f"machine {self.name}: not running (console: {self.console})")
            time.sleep(0.05)

    def path(self, inside: str) -> Path:
        """A path of the running machine's file system, seen from the host."""
        return Path(f"/proc/{self.leader()}/root") / inside.lstrip("/")

    def exec(self, command: str, timeout: float = 30, check: bool = True) -> str:
        """Run `command` with /bin/sh inside the machine (all its namespaces, a clean PATH)."""
        argv = [
            "nsenter",
            "-t",
            str(self.leader()),
            "-a",
            "env",
            "-i",
            f"PATH={PATH}",
            "sh",
            "-c",
            command,
        ]
        return sh(*argv, timeout=timeout, check=check)

    def cloud_init(self) -> dict[str, object]:
        """Cloud-init's status.json `v1` of the running machine ({} before it writes one)."""
        try:
            return json.loads(self.path("/run/cloud-init/status.json").read_text()).get("v1", {})
        except (OSError, ValueError, LabError):
            return {}

    def memory(self) -> int | None:
        """Bytes the machine uses now, by its memory cgroup (None without a memory limit)."""
        cgroup = self._cgroups(create=False)
        path = cgroup.get("memory")
        name = "memory.usage_in_bytes" if path else "memory.current"
        path = path or cgroup.get("unified")
        try:
            return int((path / name).read_text()) if path and self.memory_max else None
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """Processes the kernel killed for the machine's memory limit."""
        cgroup = self._cgroups(create=False)
        files = [cgroup["memory"] / "memory.oom_control"] if "memory" in cgroup else []
        files += [cgroup["unified"] / "memory.events"] if "unified" in cgroup else []
        for f in files:
            with contextlib.suppress(OSError, ValueError):
                for line in f.read_text().splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        return 0

    def cloud_init_done(self) -> float | None:
        """Seconds from the boot to the end of cloud-init's final stage (None: not yet)."""
        final = self.cloud_init().get("modules-final")
        finished = final.get("finished") if isinstance(final, dict) else None
        return float(finished) - self.booted_at if isinstance(finished, int | float) else None

    def describe(self) -> str:
        """`vm: booted (systemd running), cloud-init done in 7.4 s`, or how far it got."""
        if not self.running:
            return "vm: powered off"
        try:
            systemd = self.exec("systemctl is-system-running", timeout=10, check=False).strip()
        except LabError:
            systemd = "not answering"
        done = self.cloud_init_done()
        info = self.cloud_init()
        errors = info.get("errors")
        failed = len(errors) if isinstance(errors, list) else 0
        if done is not None:
            ci = f"cloud-init done in {done:.1f} s" + (f" with {failed} error(s)" if failed else "")
        else:
            stage = info.get("stage")
            ci = f"cloud-init running ({stage})" if stage else "cloud-init not started"
        return f"vm: booted (systemd {systemd or 'starting'}), {ci}"

    def poweroff(self, timeout: float = POWEROFF_S) -> None:
        """A clean shutdown (nspawn halts the machine on SIGTERM), SIGKILL after `timeout`."""
        pid = self.pid
        if pid is None or not alive(pid):
            self._remove_cgroups()
            return
        send(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            # nspawn gone, its PID 1 would live on: everything in the machine's cgroups.
            kill(
                [pid, *(p for c in self._cgroups(create=False).values() for p in cgroup_pids(c))],
                signal.SIGKILL,
            )
        self._remove_cgroups()

    def delete(self) -> None:
        """The VM deleted: powered off and its own layer gone."""
        self.poweroff()
        sh("rm", "-rf", str(self.directory), timeout=60)


@dataclass
class VmNode(Node):
    """A lab bridge node whose machine boots from the bridge's cloud-init user data."""

    image: Path | None = None  # the image root (lab/image.py); None: not built yet
    options: SoftEtherOptions = field(default_factory=SoftEtherOptions)
    instance: str = ""  # the VM's identity (cloud-init's instance-id); a new one is a new VM
    made_from: str = ""  # the cloud image it stands for (topology.clouds.bridge_image)
    ruleset: str = ""  # its own filter (components.firewall.bridge_ruleset)
    # A pair's bridge: its failover controller's config (JSON, the lab driver's), None else.
    failover: str | None = None
    # The user data to boot from as it is (the program's own, e.g. from its run under the
    # mocks); "": rendered for the stack with the lab's keys (`user_data`).
    given_user_data: str = ""
    # The machine's size and extras (see Machine); the lab runs them unlimited.
    memory_max: int | None = None
    cpus: str | None = None
    binds: tuple[tuple[Path, str], ...] = ()

    @property
    def vm(self) -> Machine:
        """The node's machine (its layers: the image, the node's SoftEther release)."""
        if self.image is None:
            raise LabError(
                f"node {self.name}: the lab's image is not built (hybrid lab up builds it)"
            )
        layers = (softether_layer(self.softether_root),) if self.softether_root else ()
        return Machine(
            self.name, self.netns, self.state_dir / "vm", self.image, layers, self.env,
            self.memory_max, self.cpus, self.binds, pid=self.pids.get("holder"),
        )  # fmt: skip

    @property
    def restart_command(self) -> str:
        return DEFAULT_RESTART  # the VM's own: systemd restarts the unit

    @property
    def config_file(self) -> Path:
        return self.vm.upper / "var/lib/softether/vpn_bridge.config"

    def user_data(self, authorized_keys: str) -> str:
        """The bridge's user data as the cloud VM gets it, with this node's host key."""
        private, public = generate_host_key(self._dir("ssh"), f"hc-lab-{self.name}")
        keys = [k for k in authorized_keys.splitlines() if k.strip()]
        return bridge_cloud_config(
            self.options, HostKey(private, public), keys, self.made_from, self.ruleset, self.failover
        )

    @property
    def first_contact_key(self) -> str:
        """The host key of the machine's user data ("" before it has one): the first converge
        replaces it on the machine, as on the VM."""
        if self.given_user_data:
            return " ".join(yaml.safe_load(self.given_user_data)["ssh_keys"]["ed25519_public"].split()[:2])
        return super().known_host_key()

    def make_first_contact_key(self) -> str:
        """The user data's host key, made if it is not yet (only `lab up` makes keys)."""
        if not self.given_user_data:
            generate_host_key(self._dir("ssh"), f"hc-lab-{self.name}")
        return self.first_contact_key

    def known_host_key(self) -> str:
        """The key the machine holds: the one its first converge gave it, else its user data's."""
        pinned = self._dir("ssh") / PINNED
        return " ".join(pinned.read_text().split()[:2]) if pinned.exists() else self.first_contact_key

    def pin(self, host_key: str) -> None:
        """Pin the host key a converge left on the machine (its user data's is retired)."""
        if host_key and host_key != self.host_key:
            (self._dir("ssh") / PINNED).write_text(host_key + "\n")
            self.host_key = host_key

    def start(self, authorized_keys: str) -> Node:
        """Seed (a new instance) and boot the machine; returns while it boots."""
        self.make_first_contact_key()
        self.host_key = self.known_host_key()
        vm = self.vm
        if not (vm.upper / SEED / "meta-data").exists():
            self.instance = self.instance or f"i-{self.netns}-{time.time_ns():x}"
            vm.seed(self.instance, self.given_user_data or self.user_data(authorized_keys), self.name)
        self.pids["holder"] = vm.boot()
        return self

    def revive(self) -> list[str]:
        """A machine that is down boots again (a reboot: the same instance, so cloud-init's
        per-instance steps are not repeated); inside it, systemd restarts what dies."""
        if self.vm.running:
            return []
        self.pids["holder"] = self.vm.boot()
        return ["machine"]

    def softether_pid(self) -> int:
        """The host PID of the bridge's worker (its pid file names it in the machine's PID
        namespace)."""
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError, ValueError, LabError, StopIteration):
                pid_file = next(self.vm.path("/run/softether").glob(".pid_*"))
                return host_pid(self.netns, int(pid_file.read_text().strip()))
            if time.monotonic() >= deadline:
                raise LabError(f"node {self.name}: no SoftEther pid file after 5 s")
            time.sleep(0.1)

    def sshd_pid(self) -> int | None:
        """The machine's listening sshd: the one its systemd started."""
        leader = self.vm.leader() if self.vm.running else None
        return next(
            (p for p in pids_in(self.netns) if comm(p) == "sshd" and parent(p) == leader), None
        )

    def nsenter(self) -> tuple[str, ...]:
        return ("nsenter", "-t", str(self.vm.leader()), "-a")

    def exec(self, command: str, timeout: float = 30, check: bool = True) -> str:
        return self.vm.exec(command, timeout, check)

    def stop(self) -> None:
        """Power the machine off (SoftEther saves its configuration), then everything left in
        the namespace, then the namespace. Safe twice."""
        if self.image is not None:
            self.vm.poweroff()
        kill_all_in(self.netns)
        netns.delete([self.netns])

    def stop_processes(self) -> None:
        if self.image is not None:
            self.vm.poweroff(timeout=5)
        kill_all_in(self.netns)


def cgroup_bases() -> dict[str, Path]:
    """Where this process sits in the hierarchies a machine needs: `unified` (cgroup2),
    `systemd` (v1 name=systemd) and `memory` (v1), those that are mounted."""
    mounts: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = [*right.split(), "", "", ""][:3]
        point = left.split()[4]
        if fstype == "cgroup2":
            mounts["unified"] = point
        elif fstype == "cgroup":
            names = options.split(",")
            mounts |= {
                k: point
                for k, n in (("systemd", "name=systemd"), ("memory", "memory"))
                if n in names
            }
    out: dict[str, Path] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        key = (
            "unified"
            if hid == "0"
            else "systemd"
            if "name=systemd" in names
            else "memory"
            if "memory" in names
            else ""
        )
        if key in mounts:
            out[key] = Path(mounts[key]) / path.lstrip("/")
    return out


def machine_cgroups(prefix: str) -> list[Path]:
    """The cgroups of the machines (on this host) whose namespace's name starts with `prefix`:
    the lab made them, one per machine, and every process of a machine is in its own."""
    return [
        d
        for base in cgroup_bases().values()
        for d in sorted((base / "hybrid-lab").glob(f"{prefix}*"))
        if d.is_dir()
    ]


def cgroup_pids(top: Path) -> set[int]:
    """Every process in cgroup `top` and below."""
    out: set[int] = set()
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            out |= {int(p) for p in procs.read_text().split()}
    return out


def remove_cgroup(top: Path) -> None:
    """Cgroup `top` and everything below it, leaves first (one still holding a process stays)."""
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def softether_layer(root: Path) -> Path:
    """A lab SoftEther build (an install root: usr/local, lib/systemd/system) as an overlay
    layer for a Debian 12 root, where /lib is a link to usr/lib: the same files at the paths
    `make install` gives them on the VM (hard links, made once next to the build)."""
    layer = root.parent / "vm-layer"
    if layer.is_dir():
        return layer
    scratch = root.parent / f".vm-layer.{os.getpid()}"
    sh("rm", "-rf", str(scratch))
    (scratch / "usr/lib").mkdir(parents=True)
    sh("cp", "-al", str(root / "usr/local"), str(scratch / "usr/local"))
    if (root / "lib").is_dir():
        sh("cp", "-al", str(root / "lib/systemd"), str(scratch / "usr/lib/systemd"))
    with contextlib.suppress(OSError):  # another process made it meanwhile: keep theirs
        scratch.rename(layer)
    sh("rm", "-rf", str(scratch))
    return layer


def started_at(pid: int) -> float:
    """The wall-clock start of process `pid` (0.0 if it is gone)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return 0.0
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def on_testbed(bed: Testbed, name: str, address: str, user_data: str, instance: str) -> VmNode:
    """A machine on test bed `bed` at `address` that boots from `user_data` as it is, identity
    `instance`: on the internet already (its address refuses connections), not booted
    (`start("")` boots it and returns while it boots); torn down with the bed."""
    node = VmNode(
        name, "bridge", f"hc-{bed.run}-{name}", bed.root / name, IPv4Interface(address),
        softether_root=bed.softether_root, softether_label=bed.softether_label,
        image=image.image().root, instance=instance, given_user_data=user_data,
    )  # fmt: skip
    bed.attach(node)
    return node


def parent(pid: int) -> int | None:
    """A process's parent PID (None once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def host_pid(ns: str, inner: int) -> int:
    """The host PID of the process in network namespace `ns` whose innermost PID is `inner`."""
    for pid in pids_in(ns):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if (
                    line.startswith("NSpid:")
                    and int(line.split()[-1]) == inner
                    and len(line.split()) > 2
                ):
                    return pid
    raise LabError(f"no process with PID {inner} inside {ns}")
