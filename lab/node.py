"""A SoftEther node in a network namespace, reachable over real SSH: the lab's building block.

Each node gets
- its own network namespace (`hc-<run>-<name>`) and a private mount namespace in which
  per-node directories are bind-mounted over the Debian build's compiled-in state paths
  (/var/lib/softether, /var/log/softether, /run/softether), over /etc/systemd/system and
  /etc/sysctl.d (so the OS-side persistence of `softether.hostos` never writes the real /etc)
  and over /run/sshd;
- a SoftEther VPN Server or Bridge instance started in that mount namespace;
- an sshd in the same mount namespace, listening only on the node's address, with a host key
  generated for this run and an authorized-keys file of this run (never /root/.ssh). Its
  sessions are hermetic: HOME is a per-node empty directory (so the shell that runs each
  command reads none of the operator's dotfiles, e.g. a ~/.bashrc that Debian's bash reads
  for commands run by sshd), no ~/.ssh/rc, no ~/.ssh/environment.

The test bed's internet is a namespace with a Linux bridge that joins the nodes' "wan"
interfaces (addresses from 198.51.100.0/24, the documentation range), built like the lab's
network: a small `lab.layout.Layout` made real by `lab.netns.build`. Nothing is configured in
the root namespace: the test process reaches sshd through a socket opened inside the node's
network namespace (`netns_socket`).

Why `compat/` (LD_PRELOAD): Debian 12's SoftEther 5.01.9674 is built against OpenSSL 3 but
predates upstream's fix of its SSL error handling (upstream b2ec1bd5, released in 5.02.5185).
A stale entry in OpenSSL's per-thread error queue makes a later SSL_read/SSL_write on the same
thread look failed, so a cascade made after an admin session can be "established" yet carry
nothing. The library clears the error queue before each SSL I/O call, which is what the
upstream fix does. The lab loads it into its SoftEther processes; `softether.session` still
verifies traffic and restarts a bridge if needed, as a real deployment on this build must.

`Testbed` puts the pieces together for tests and benchmarks (client key, compat library,
internet, nodes, a pinned-key `SshTransport` per node, teardown of everything).

The three state paths, the two /etc directories and /run/sshd must exist as mount points;
`Node.start` creates them if missing (they are the packages' own directories) and leaves them.

Teardown (`Node.stop`, `Testbed.stop`) is idempotent: it stops processes by the PIDs in the
node's network namespace (all of them were started by the lab, `lab.proc.kill_all_in`) and
deletes the namespaces (`lab.netns.delete`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from components.cloudinit import BRIDGE_BINARY
from softether.spec import SshTarget
from softether.transport import SshTransport, ssh_transport

from . import netns
from .layout import Layout, Link, Namespace, VpnNode
from .proc import (
    LabError,
    comm,
    exists,
    kill_all,
    kill_all_in,
    netns_id,
    netns_of,
    owned,
    pids_in,
    pids_sharing_netns,
    sh,
)

STATE_PATHS = ("/var/lib/softether", "/var/log/softether", "/run/softether")
ETC_PATHS = ("/etc/systemd/system", "/etc/sysctl.d")
SSHD_RUN = "/run/sshd"
BINARIES = {
    "server": "/usr/libexec/softether/vpnserver/vpnserver",
    "bridge": "/usr/libexec/softether/vpnbridge/vpnbridge",
}
# An upstream build (lab.softether_build): its /usr/local is bind-mounted over the node's, so
# the paths are the VM's, and a bridge starts with its unit's ExecStart.
UPSTREAM_PREFIX = "/usr/local"
UPSTREAM_BINARIES = {"server": f"{UPSTREAM_PREFIX}/bin/vpnserver", "bridge": BRIDGE_BINARY["upstream"]}
CLONE_NEWNET = 0x40000000
COMPAT_LIBRARY = "softether_compat.so"

COMPAT_C = r"""
/* Clear OpenSSL's thread error queue before every SSL I/O call (see lab/node.py). */
#define _GNU_SOURCE
#include <dlfcn.h>
typedef int (*io_fn)(void *, void *, int);
typedef int (*hs_fn)(void *);
static void clear_errors(void) {
    static void (*clear)(void);
    if (!clear) clear = (void (*)(void))dlsym(RTLD_DEFAULT, "ERR_clear_error");
    if (clear) clear();
}
#define WRAP_IO(name) int name(void *s, void *b, int n) { \
    static io_fn real; if (!real) real = (io_fn)dlsym(RTLD_NEXT, #name); \
    clear_errors(); return real(s, b, n); }
#define WRAP_HS(name) int name(void *s) { \
    static hs_fn real; if (!real) real = (hs_fn)dlsym(RTLD_NEXT, #name); \
    clear_errors(); return real(s); }
WRAP_IO(SSL_read)
WRAP_IO(SSL_peek)
WRAP_IO(SSL_write)
WRAP_HS(SSL_accept)
WRAP_HS(SSL_connect)
"""


def run_id() -> str:
    """A short random suffix that keeps parallel runs' namespaces apart."""
    return secrets.token_hex(3)


def build_compat_library(directory: Path) -> Path:
    """Compile the OpenSSL-3 error-queue shim (a few lines of C) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    src, lib = directory / "softether_compat.c", directory / COMPAT_LIBRARY
    if not lib.exists():
        src.write_text(COMPAT_C)
        sh("gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl")
    return lib


def netns_socket(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection opened from inside network namespace `netns`.

    setns() changes only the calling thread's namespace, so a short-lived thread enters the
    namespace, connects, and hands the socket back; the caller's thread is untouched.
    """
    result: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.create_connection((host, port), timeout=timeout))
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout + 5)
    if not result:
        raise TimeoutError(f"connect to {host}:{port} in {netns} timed out")
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    return got


@dataclass
class Node:
    """One SoftEther node. `start()` brings it up; `stop()` is idempotent and always safe."""

    name: str
    kind: Literal["server", "bridge"]
    netns: str
    state_dir: Path
    address: IPv4Interface  # on its "wan0" interface
    compat_library: Path | None = None
    ssh_port: int = 22
    pids: dict[str, int] = field(default_factory=dict)
    host_key: str = ""  # "ssh-ed25519 AAAA..." of this run
    admin_port: int = 5555  # start() returns once SoftEther listens here
    # Extra environment of every process of the node (the lab's mark, see lab.state).
    env: dict[str, str] = field(default_factory=dict)
    # The install root of an upstream build (lab.softether_build.Release.root); None: the
    # machine's Debian packages, the only ones `compat_library` is for.
    softether_root: Path | None = None
    softether_label: str = ""  # "upstream 5.2.5188 10d6efcc" / "debian 5.01.9674"

    def __post_init__(self) -> None:
        if self.softether_root is not None and self.compat_library is not None:
            raise LabError(f"node {self.name}: the compatibility library is for Debian's build only")

    # ---- paths ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self.address.ip)

    @property
    def binary(self) -> str:
        return (UPSTREAM_BINARIES if self.softether_root else BINARIES)[self.kind]

    def _dir(self, name: str) -> Path:
        return self.state_dir / name

    @property
    def unit_dir(self) -> Path:
        """What the node sees as /etc/systemd/system."""
        return self._dir("etc-systemd-system")

    @property
    def sysctl_dir(self) -> Path:
        return self._dir("etc-sysctl.d")

    @property
    def config_file(self) -> Path:
        return self._dir("lib") / f"vpn_{self.kind}.config"

    def _env(self) -> str:
        return f"LD_PRELOAD={shlex.quote(str(self.compat_library))} " if self.compat_library else ""

    def softether_command(self, action: Literal["start", "stop"]) -> str:
        """Shell to start/stop this node's SoftEther (run inside the node's namespaces)."""
        return f"{self._env()}{self.binary} {action}"

    @property
    def restart_command(self) -> str:
        """What `BridgeSpec.restart_command` is in the lab (run over SSH, inside the node)."""
        stop = self.softether_command("stop")
        return f"{stop} >/dev/null 2>&1; sleep 0.5; {self.softether_command('start')} >/dev/null"

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, authorized_keys: str) -> Node:
        """Start the holder (mount namespace), SoftEther and sshd. The netns must exist and
        have the node's address (sshd listens only there)."""
        for d in (
            "lib", "log", "run", "sshd-run", "ssh", "home", "etc-systemd-system", "etc-sysctl.d"
        ):  # fmt: skip
            self._dir(d).mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir("sshd-run"), 0o755)
        os.chmod(self._dir("home"), 0o700)
        # Mount points must exist on the real filesystem; these are the packages' own
        # directories (softether-*, openssh-server), left in place like the packages would.
        for p in (*STATE_PATHS, *ETC_PATHS, SSHD_RUN):
            Path(p).mkdir(parents=True, exist_ok=True)
        ssh = self._dir("ssh")
        key = host_key_file(ssh)
        self.host_key = generate_host_key(ssh, f"hc-lab-{self.name}")[1]
        (ssh / "authorized_keys").write_text(authorized_keys)
        os.chmod(ssh / "authorized_keys", 0o600)
        (ssh / "sshd_config").write_text(
            "\n".join(
                [
                    f"ListenAddress {self.host}:{self.ssh_port}",
                    f"HostKey {key}",
                    f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
                    f"PidFile {ssh / 'sshd.pid'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxStartups 50",
                    # Hermetic sessions: not the operator's HOME, rc or environment files.
                    "SetEnv "
                    + " ".join(
                        shlex.quote(f"{k}={v}")
                        for k, v in {"HOME": str(self._dir("home")), **self.env}.items()
                    ),
                    "PermitUserRC no",
                    "PermitUserEnvironment no",
                    "",
                ]
            )
        )
        binds = [
            (self._dir("lib"), STATE_PATHS[0]),
            (self._dir("log"), STATE_PATHS[1]),
            (self._dir("run"), STATE_PATHS[2]),
            (self.unit_dir, ETC_PATHS[0]),
            (self.sysctl_dir, ETC_PATHS[1]),
            (self._dir("sshd-run"), SSHD_RUN),
        ]
        if self.softether_root is not None:
            binds.append((self.softether_root / UPSTREAM_PREFIX.lstrip("/"), UPSTREAM_PREFIX))
        init = " && ".join(f"mount --bind {shlex.quote(str(a))} {b}" for a, b in binds)
        init += (
            f" && {self.softether_command('start')} >/dev/null"
            f" && {self._sshd_command} && echo ready && exec sleep infinity"
        )
        holder = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                init,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        self.pids["holder"] = holder.pid
        assert holder.stdout is not None
        line = holder.stdout.readline()  # "ready", or EOF if a step failed
        if line.strip() != "ready":
            err = holder.stderr.read() if holder.stderr else ""
            raise LabError(f"node {self.name}: start failed: {err.strip()}")
        self.pids["sshd"] = _read_pid(self.name, lambda: [ssh / "sshd.pid"])
        self.pids["softether"] = self.softether_pid()
        self.wait_listening(self.admin_port)
        return self

    @property
    def _sshd_command(self) -> str:
        return f"/usr/sbin/sshd -f {shlex.quote(str(self._dir('ssh') / 'sshd_config'))}"

    def revive(self) -> list[str]:
        """On a running node (holder alive), restart what died: SoftEther when neither its
        watchdog nor its worker lives (a worker alone is restarted by the watchdog), sshd.
        Returns what was restarted; `pids` names the live processes afterwards."""
        restarted: list[str] = []
        marks = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env.items())
        name = Path(self.binary).name[:15]  # /proc/PID/comm is cut at 15 characters
        if not any(comm(p) == name for p in pids_in(self.netns)):
            for stale in self._dir("run").glob(".pid_*"):
                stale.unlink(missing_ok=True)
            self.exec(f"{marks}{self.softether_command('start')} >/dev/null")
            self.pids["softether"] = self.softether_pid()
            self.wait_listening(self.admin_port)
            restarted.append("softether")
        if not self.owns(self.pids.get("sshd")):
            pid_file = self._dir("ssh") / "sshd.pid"
            pid_file.unlink(missing_ok=True)
            self.exec(f"{marks}{self._sshd_command}")
            self.pids["sshd"] = _read_pid(self.name, lambda: [pid_file])
            restarted.append("sshd")
        return restarted

    def known_host_key(self) -> str:
        """The host key this node was given ("" before its first start)."""
        pub = host_key_file(self._dir("ssh")).with_suffix(".pub")
        return " ".join(pub.read_text().split()[:2]) if pub.exists() else ""

    def sshd_pid(self) -> int | None:
        """The node's listening sshd (the parent of every SSH session's sshd)."""
        return self.pids.get("sshd")

    def owns(self, pid: int | None) -> bool:
        """`pid` lives and is this node's: it carries the node's `env` (the lab's mark) or runs
        in the node's network namespace (lab.proc.owned)."""
        return owned(pid, {f"{k}={v}".encode() for k, v in self.env.items()}, [self.netns])

    def softether_pid(self) -> int:
        """The worker's PID, from the pid file SoftEther writes into its (per-node) run dir."""
        return _read_pid(self.name, lambda: list(self._dir("run").glob(".pid_*")))

    def nsenter(self) -> tuple[str, ...]:
        """Prefix that runs a command inside this node's network and mount namespaces."""
        return ("nsenter", "-t", str(self.pids["holder"]), "-n", "-m")

    def exec(self, command: str, timeout: float = 30, check: bool = True) -> str:
        return sh(*self.nsenter(), "sh", "-c", command, timeout=timeout, check=check)

    def wait_listening(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                netns_socket(self.netns, "127.0.0.1", port, 1.0).close()
                return
            time.sleep(0.1)
        raise LabError(f"node {self.name}: nothing listens on {port} after {timeout} s")

    def stop(self) -> None:
        """Stop SoftEther gracefully (it saves its config), then every process in the node's
        network namespace by PID, then delete the namespace. Safe to call twice."""
        if not exists(self.netns):
            return
        if self.owns(self.pids.get("holder")):
            with contextlib.suppress(LabError, subprocess.TimeoutExpired):
                self.exec(
                    self.softether_command("stop") + " >/dev/null 2>&1", timeout=15, check=False
                )
        self.stop_processes()
        netns.delete([self.netns])

    def stop_processes(self) -> None:
        """TERM, then KILL, every process in the node's network namespace and, if that was
        deleted by hand, in the unnamed one its holder still runs in (bounded)."""
        holder = self.pids.get("holder")
        if self.owns(holder) and holder and netns_of(holder) != netns_id(self.netns):
            kill_all(lambda: pids_sharing_netns(holder))
        kill_all_in(self.netns)


def _read_pid(node: str, candidates: Callable[[], list[Path]], timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in candidates():
            with contextlib.suppress(OSError):
                text = p.read_text().strip()
                if text.isdigit():
                    return int(text)
        time.sleep(0.05)
    raise LabError(f"node {node}: no pid file after {timeout} s")


def host_key_file(directory: Path) -> Path:
    """The node's SSH host key (private; the public half is `.pub`)."""
    return directory / "ssh_host_ed25519_key"


def generate_host_key(directory: Path, comment: str) -> tuple[str, str]:
    """(private key text, `ssh-ed25519 AAAA...`) of the host key in `directory`, made once."""
    directory.mkdir(parents=True, exist_ok=True)
    key = host_key_file(directory)
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key))
    return key.read_text(), " ".join(key.with_suffix(".pub").read_text().split()[:2])


def client_key_file(directory: Path) -> Path:
    """The private key file `generate_client_key(directory)` makes (public key: `.pub`)."""
    return directory / "id_ed25519"


def generate_client_key(directory: Path) -> tuple[str, str]:
    """(private key text, public key line) of a fresh ed25519 key for this run."""
    directory.mkdir(parents=True, exist_ok=True)
    path = client_key_file(directory)
    if not path.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hc-lab-client", "-f", str(path))
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


@dataclass
class Testbed:
    """An internet namespace plus SoftEther nodes on it, for tests and benchmarks.

    Built like the lab: a small `Layout` (the internet namespace with its Linux bridge, one
    namespace per node, its `wan0` veth to the internet) made real by `lab.netns.build` and
    deleted by `lab.netns.delete`. `add(...)` creates and starts a node; `attach(node)` puts
    a machine that is not started (e.g. the operator's) on the internet; `transport(node)`
    gives an SshTransport that pins the node's host key and connects through its namespace;
    `stop()` tears everything down (idempotent, continues past failures); `with Testbed(...)
    as bed:` starts it and calls `stop()` however the block ends.
    """

    __test__ = False  # not a pytest class, despite the name

    root: Path
    run: str = field(default_factory=run_id)
    # The compatibility library, for Debian's build only; False with no `source`: Debian's
    # build without it (the OpenSSL-3 defect, for the tests that reproduce it).
    preload: bool = True
    nodes: dict[str, Node] = field(default_factory=dict)
    client_key: str = ""
    client_pub: str = ""
    compat: Path | None = None
    # None: the pinned upstream build when it is in the cache (`make lab` builds it; a test
    # bed never builds), else Debian's packages; Debian's with `preload` False.
    source: Literal["upstream", "debian"] | None = None
    softether_root: Path | None = None
    softether_label: str = ""
    ports: int = 0  # machines attached so far (their internet ports are p1, p2, ...)

    @property
    def internet(self) -> str:
        """The internet's namespace (its Linux bridge is `inet0`)."""
        return f"hc-{self.run}-net"

    def _layout(self, node: Node | None = None, lan_device: str | None = None) -> Layout:
        """The internet, with `node` on it: `wan0` (its address) to the bridge's next port and,
        with `lan_device`, a veth of that name inside the node (peer `lanpeer`). Pure data."""
        spaces = [Namespace("net", self.internet, "inet", "internet", switches=(("inet0", None),))]
        links: list[Link] = []
        vpn: list[VpnNode] = []
        if node is not None:
            spaces.append(Namespace(node.name, node.netns, node.kind, node.name))
            port = f"p{self.ports}"
            links.append(Link(node.netns, "wan0", self.internet, port, node.address, None, "inet0"))
            if lan_device:
                links.append(Link(node.netns, lan_device, node.netns, "lanpeer"))
            vpn.append(VpnNode(node.netns, node.kind, node.name, node.address, node.name))
        return Layout(
            lab_id=self.run,
            stack="",
            namespaces=tuple(spaces),
            links=tuple(links),
            hosts=(),
            nodes=tuple(vpn),
            db=None,
            app=None,
            operator_ns=self.internet,
            stranger_ns=self.internet,
        )

    def start(self) -> Testbed:
        from topology import SoftEtherOptions

        from .softether_build import cached_release, debian_release, release

        self.client_key, self.client_pub = generate_client_key(self.root / "client")
        source = self.source or ("upstream" if self.preload else "debian")
        options = SoftEtherOptions(source=source)
        got = (cached_release(options) or debian_release()) if self.source is None else release(options)
        self.softether_root, self.softether_label = got.root, got.label
        if self.preload and got.source == "debian":
            self.compat = build_compat_library(self.root / "compat")
        netns.build(self._layout())
        return self

    def __enter__(self) -> Testbed:
        """`with Testbed(root) as bed:` starts it and tears it down on the way out, also when
        `start()` itself fails half-way (its internet namespace may already exist)."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def attach(self, node: Node, lan_device: str | None = None) -> Node:
        """Create `node`'s namespace on the internet (`wan0` with `node.address`) and, with
        `lan_device`, a veth of that name inside it (its peer `lanpeer` too); nothing starts
        (e.g. the operator's machine). The node is torn down with the test bed."""
        self.nodes[node.name] = node
        self.ports += 1
        netns.build(self._layout(node, lan_device))
        return node

    def add(
        self,
        name: str,
        kind: Literal["server", "bridge"],
        address: str,
        lan_device: str | None = None,
    ) -> Node:
        """Start a node at `address` (e.g. 198.51.100.1/24). `lan_device`: a veth of that name
        inside the node (its peer `lanpeer` too), for a server's local bridge."""
        node = Node(
            name,
            kind,
            f"hc-{self.run}-{name}",
            self.root / name,
            IPv4Interface(address),
            compat_library=self.compat,
            softether_root=self.softether_root,
            softether_label=self.softether_label,
        )
        self.attach(node, lan_device)
        node.start(self.client_pub)
        return node

    def transport(
        self, node: Node, *, host_key: str | None = None, deadline: float = 20.0
    ) -> SshTransport:
        target = SshTarget(
            host=node.host,
            host_key=host_key or node.host_key,
            private_key=SecretStr(self.client_key),
            connect_deadline_s=deadline,
        )
        return ssh_transport(target, lambda h, p, t: netns_socket(node.netns, h, p, t))

    def stop(self) -> None:
        errors: list[str] = []
        for node in self.nodes.values():
            try:
                node.stop()
            except Exception as e:  # keep tearing down the others
                errors.append(f"{node.name}: {e}")
        kill_all_in(self.internet)
        netns.delete([self.internet])
        if errors:
            raise LabError("teardown: " + "; ".join(errors))
