"""The node's operating-system side, the same way as the SoftEther side: facts, plan, shell.

- A VPN Bridge host: the tap's address, the OS routes of the routing plan over it, IPv4
  forwarding; persisted by a oneshot unit bound to the SoftEther service and a sysctl.d
  drop-in; the SoftEther service and the unit enabled (the symlinks `systemctl enable` would
  make, so this also works where systemd is not running, e.g. the lab).
  The tap is re-created whenever the bridge's worker process restarts, and SoftEther's own
  watchdog restarts a crashed worker without systemd knowing: a small watcher (`ip monitor
  link address route`, blocked in a read between events) re-applies the address and routes
  each time a new tap appears, and when the tap's address or a route over it is deleted. On a VM it is a systemd service (Restart=always); where systemd does not run
  (the lab) the same script runs detached with a pid file; the plan (re)starts it when it is
  not running or its unit changed.
- A VPN Server host: checksum/segmentation offloads off on locally bridged NICs.
- Every node: SoftEther's `adminip.txt` in its state directory (`ADMIN_SOURCES`: the machine
  itself). SoftEther reads it at every admin login, the admin RPC of vpncmd and the JSON-RPC
  API alike, and refuses any other source address before it checks the password
  (src/Cedar/Admin.c `CheckAdminSourceAddress`, `$adminip.txt` = the directory of the
  configuration file; the same in Debian's 5.01 and in 5.2.5188). VPN sessions, the cascades
  among them, never read it. vpncmd runs on the node itself (over SSH, to localhost), so
  nothing of the project administers a node from elsewhere.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from .spec import BridgeSpec, HostOsSpec, ServerSpec

OFFLOADS = {
    "rx-checksumming": "rx",
    "tx-checksumming": "tx",
    "tcp-segmentation-offload": "tso",
    "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
}
SYSCTL_FILE = "60-hybrid-ip-forward.conf"
ADMIN_IP_FILE = "adminip.txt"
# vpncmd to localhost:<port> may resolve to either loopback address.
ADMIN_SOURCES = ("127.0.0.1", "::1")
# Where the SoftEther unit lives when `unit_dir` has none (the Debian package's unit); the
# project's own unit (cloud-init writes it into /etc/systemd/system) takes precedence.
PACKAGE_UNIT_DIR = "/lib/systemd/system"
WATCH_PID_DIR = "/run/softether"  # where the watcher's pid file lives without systemd


@dataclass(frozen=True)
class HostChange:
    summary: str
    shell: str


@dataclass(frozen=True)
class HostFacts:
    device_exists: bool = False
    device_up: bool = False
    addresses: tuple[IPv4Interface, ...] = ()
    routes: tuple[tuple[IPv4Network, IPv4Address], ...] = ()
    ip_forward: bool = False
    files: dict[str, str] = field(default_factory=dict)  # path -> content ("" if absent)
    links: dict[str, str] = field(default_factory=dict)  # symlink path -> target ("" if absent)
    offloads: dict[str, dict[str, bool]] = field(default_factory=dict)  # dev -> short -> on
    own_service_unit: bool = False  # unit_dir holds the SoftEther service's unit itself
    mac: str = ""  # the device's link address, lower case ("" if unknown)
    watcher_running: bool = False  # the tap watcher (see watch_script) runs
    configured_here: bool = False  # the spec's state_dir holds SoftEther's configuration
    host_key: str = ""  # the node's SSH host key, `ssh-ed25519 AAAA...` (read if one is retired)


HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"  # sshd's (Debian's default HostKey)
TAP_WAIT_S = 15.0  # how long the OS side waits for SoftEther to create the tap (a restart)


def unit_text(h: HostOsSpec) -> str:
    lines = [
        "# Written by hybrid-cloud (softether/hostos.py). SoftEther re-creates the tap whenever",
        "# the bridge process restarts, so this unit is bound to the service and re-applies",
        "# the tap's address and the routes of the routing plan each time.",
        "[Unit]",
        "Description=hybrid-cloud: address and routes of the SoftEther bridge tap",
        f"After={h.service}",
        f"BindsTo={h.service}",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart={_exec_sh(wait_for_device(h.device, TAP_WAIT_S))}",
        *(f"ExecStart={c}" for c in _apply_lines(h)),
        "",
        "[Install]",
        f"WantedBy={h.service} multi-user.target",
        "",
    ]
    return "\n".join(lines)


def _apply_lines(h: HostOsSpec) -> list[str]:
    """The tap's fixed MAC (if any), address, up, and the routes over it (idempotent `ip`
    commands)."""
    dev = h.device
    return [
        *([f"/sbin/ip link set dev {dev} address {h.mac}"] if h.mac else []),
        f"/sbin/ip address replace {h.address} dev {dev}",
        f"/sbin/ip link set {dev} up",
        *(f"/sbin/ip route replace {r.network} via {r.via} dev {dev}" for r in h.routes),
    ]


def watch_unit_name(h: HostOsSpec) -> str:
    return h.unit_name.removesuffix(".service") + "-watch.service"


def watch_script(h: HostOsSpec) -> str:
    """POSIX sh, one line: apply now if the tap exists, then again whenever a new tap appears
    (a link event with another ifindex: SoftEther re-created it), a link event finds it
    without its address, or the tap's address or a route over it is deleted while the tap is
    up (by hand: the site went dark until the next converge). A tap set down by hand keeping
    its address is left to the reconciler (which restarts a bridge that carries nothing)."""
    dev = h.device
    apply = "; ".join(f"{c} 2>/dev/null" for c in _apply_lines(h))
    has = f"/sbin/ip -4 -o address show dev {dev} 2>/dev/null | grep -qF 'inet {h.address} '"
    # IFF_UP: the kernel drops a downed tap's routes too, and a downed tap is left alone.
    up = f"[ $(( $(cat /sys/class/net/{dev}/flags 2>/dev/null || echo 0) & 1 )) -eq 1 ]"
    # `ip monitor` lines: "Deleted 7: tap: <...>" (the tap itself: wait for the new one),
    # "Deleted 7: tap    inet ..." (its address), "Deleted NET via GW dev tap ..." (a route).
    return (
        f"last=; apply() {{ {apply}; }}; "
        f"if [ -e /sys/class/net/{dev} ]; then last=$(cat /sys/class/net/{dev}/ifindex); apply; fi; "
        f"/sbin/ip monitor link address route | while read -r line; do case $line in "
        f"Deleted*': {dev}: '*) ;; "
        f"Deleted*': {dev} '*|Deleted*' dev {dev} '*|Deleted*' dev {dev}') if {up}; then apply; fi ;; "
        f"Deleted*) ;; *': {dev}: '*) i=${{line%%:*}}; "
        f'if [ "$i" != "$last" ] || ! {{ {has}; }}; then last=$i; apply; fi ;; esac; done'
    )


def _exec_sh(script: str) -> str:
    """An ExecStart= command line running `script` with /bin/sh, quoted for systemd."""
    # systemd unquotes \\ and \" inside double quotes, and reads `$` and `%` itself: doubled,
    # they reach the shell as they are.
    script = script.replace("\\", "\\\\").replace('"', '\\"')
    return '/bin/sh -c "' + script.replace("$", "$$").replace("%", "%%") + '"'


def watch_unit_text(h: HostOsSpec) -> str:
    lines = [
        "# Written by hybrid-cloud (softether/hostos.py). SoftEther's watchdog restarts a crashed",
        "# bridge worker without systemd; the new tap comes up bare. This re-applies its address",
        "# and routes whenever it appears.",
        "[Unit]",
        f"Description=hybrid-cloud: re-apply address and routes whenever {h.device} appears",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={_exec_sh(watch_script(h))}",
        "Restart=always",
        "RestartSec=1",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def watch_pid_file(h: HostOsSpec) -> str:
    return f"{WATCH_PID_DIR}/{watch_unit_name(h)}.pid"


def sysctl_text(h: HostOsSpec) -> str:
    return f"net.ipv4.ip_forward = {1 if h.ip_forward else 0}\n"


def _paths(h: HostOsSpec, own_service_unit: bool = False) -> tuple[str, str, str, dict[str, str]]:
    """(oneshot unit, sysctl drop-in, watcher unit, enable links -> targets)."""
    unit = f"{h.unit_dir}/{h.unit_name}"
    sysctl = f"{h.sysctl_dir}/{SYSCTL_FILE}"
    watch = f"{h.unit_dir}/{watch_unit_name(h)}"
    service_unit = f"{h.unit_dir if own_service_unit else PACKAGE_UNIT_DIR}/{h.service}"
    links = {
        f"{h.unit_dir}/multi-user.target.wants/{h.unit_name}": unit,
        f"{h.unit_dir}/{h.service}.wants/{h.unit_name}": unit,
        f"{h.unit_dir}/multi-user.target.wants/{h.service}": service_unit,
        f"{h.unit_dir}/multi-user.target.wants/{watch_unit_name(h)}": watch,
    }
    return unit, sysctl, watch, links


def admin_ip_text() -> str:
    """adminip.txt: administration from this machine only (a line per allowed source)."""
    return "\n".join(
        [
            "# Written by hybrid-cloud (softether/hostos.py): SoftEther accepts administration",
            "# only from this machine; vpncmd runs here, over SSH.",
            *ADMIN_SOURCES,
            "",
        ]
    )


def admin_ip_path(spec: ServerSpec | BridgeSpec) -> str:
    return f"{spec.state_dir.rstrip('/')}/{ADMIN_IP_FILE}"


def config_path(spec: ServerSpec | BridgeSpec) -> str:
    """SoftEther's configuration file, which `state_dir` must hold."""
    return f"{spec.state_dir.rstrip('/')}/vpn_{spec.kind}.config"


def _bridged_nics(spec: ServerSpec | BridgeSpec) -> list[str]:
    return [b.device for b in spec.local_bridges if b.offloads_off and not b.tap]


def facts_script(spec: ServerSpec | BridgeSpec) -> str:
    """A read-only shell script; its output is parsed by `parse_facts`."""
    q = shlex.quote
    parts: list[str] = []
    h = spec.host_os if isinstance(spec, BridgeSpec) else None
    if h is not None:
        dev = q(h.device)
        unit, sysctl, watch, links = _paths(h)
        parts += [
            f"echo @@dev; [ -e /sys/class/net/{dev} ] && ip -o link show dev {dev}",
            f"echo @@addr; ip -o -4 addr show dev {dev} 2>/dev/null",
            f"echo @@route; ip -o -4 route show dev {dev} 2>/dev/null",
            "echo @@forward; cat /proc/sys/net/ipv4/ip_forward",
        ]
        for path in (unit, sysctl, watch, *(f for f, _ in h.files)):
            parts.append(f"echo @@file {q(path)}; cat {q(path)} 2>/dev/null")
        for link in links:
            parts.append(f"echo @@link {q(link)}; readlink {q(link)} 2>/dev/null")
        own = f"{h.unit_dir}/{h.service}"
        parts.append(f"echo @@own; [ -f {q(own)} ] && [ ! -L {q(own)} ] && echo yes")
        pid = q(watch_pid_file(h))
        parts.append(
            "echo @@watch; if [ -d /run/systemd/system ]; then "
            # systemctl waits for a busy PID 1 up to D-Bus's 25 s: bounded below the read's.
            f"timeout 5 systemctl is-active --quiet {q(watch_unit_name(h))} && echo yes; "
            # A zombie is not running (an init that reaps late, as on this machine kind).
            f'else p=$(cat {pid} 2>/dev/null) && grep -qs "^State:[[:space:]]*[^Z[:space:]]" '
            f'"/proc/$p/status" && echo yes; fi'
        )
        if h.retired_host_key:
            # cloud-init writes the user data's key without a final newline.
            parts.append(f"echo @@hostkey; cat {HOST_KEY}.pub 2>/dev/null; echo")
    for nic in _bridged_nics(spec):
        parts.append(f"echo @@ethtool {q(nic)}; ethtool -k {q(nic)} 2>/dev/null")
    admin = q(admin_ip_path(spec))
    parts.append(f"echo @@file {admin}; cat {admin} 2>/dev/null")
    parts.append(f"echo @@config; [ -f {q(config_path(spec))} ] && echo yes")
    parts.append("echo @@end")
    return "\n".join(parts) + "\n"


def parse_facts(text: str) -> HostFacts:
    """ValueError when the script did not run to its end: a section cut off would read as a
    missing file, address or unit and be planned as drift."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.split("\n"):
        if line.startswith("@@"):
            sections.append((line[2:], []))
        elif sections:
            sections[-1][1].append(line)
    if not sections or sections[-1][0] != "end":
        last = f"after @@{sections[-1][0]}" if sections else "before its first section"
        raise ValueError(f"the host facts script stopped {last}")
    exists = up = fwd = False
    mac = ""
    addrs: list[IPv4Interface] = []
    routes: list[tuple[IPv4Network, IPv4Address]] = []
    files: dict[str, str] = {}
    links: dict[str, str] = {}
    offloads: dict[str, dict[str, bool]] = {}
    own = watching = here = False
    host_key = ""
    for head, body in sections:
        kind, _, arg = head.partition(" ")
        match kind:
            case "dev":
                first = next((b for b in body if b.strip()), "")
                exists = bool(first)
                m = re.search(r"<([^>]*)>", first)
                up = bool(m and "UP" in m.group(1).split(","))
                ether = re.search(r"link/ether ([0-9a-fA-F:]{17})", first)
                mac = ether.group(1).lower() if ether else ""
            case "addr":
                for b in body:
                    m = re.search(r"\binet (\S+)", b)
                    if m:
                        addrs.append(IPv4Interface(m.group(1)))
            case "route":
                for b in body:
                    m = re.match(r"^(\S+) via (\S+)", b.strip())
                    if m:
                        routes.append((IPv4Network(m.group(1)), IPv4Address(m.group(2))))
            case "forward":
                fwd = "".join(body).strip() == "1"
            case "file":
                files[arg] = "\n".join(body)
            case "link":
                links[arg] = "".join(body).strip()
            case "own":
                own = "".join(body).strip() == "yes"
            case "watch":
                watching = "".join(body).strip() == "yes"
            case "config":
                here = "".join(body).strip() == "yes"
            case "hostkey":
                host_key = key_id(next((b for b in body if b.strip()), ""))
            case "ethtool":
                state: dict[str, bool] = {}
                for b in body:
                    name, _, val = b.strip().partition(":")
                    # A "[fixed]" feature cannot be changed: do not plan for it.
                    if name in OFFLOADS and "[fixed]" not in val:
                        state[OFFLOADS[name]] = val.strip().startswith("on")
                if state:
                    offloads[arg] = state
            case _:
                pass
    return HostFacts(
        exists, up, tuple(addrs), tuple(routes), fwd, files, links, offloads, own, mac, watching, here,
        host_key,
    )  # fmt: skip


def key_id(line: str) -> str:
    """`<type> <base64>` of a public key line (its comment dropped)."""
    return " ".join(line.split()[:2])


def _write(path: str, text: str) -> str:
    """Shell: write `text` to `path` (its directory made first), replacing it atomically."""
    q = shlex.quote
    d = q(path.rsplit("/", 1)[0])
    return f"mkdir -p {d} && printf '%s' {q(text)} > {q(path)}.tmp && mv {q(path)}.tmp {q(path)}"


def plan(spec: ServerSpec | BridgeSpec, facts: HostFacts) -> tuple[HostChange, ...]:
    """Shell changes for the OS side; empty when converged."""
    q = shlex.quote
    out: list[HostChange] = []
    admin = admin_ip_path(spec)
    if facts.files.get(admin, "") != admin_ip_text().rstrip("\n"):
        out.append(
            HostChange(f"~ {admin}: SoftEther administration from this machine only", _write(admin, admin_ip_text()))
        )
    for nic in _bridged_nics(spec):
        on = sorted(k for k, v in facts.offloads.get(nic, {}).items() if v)
        if on:
            out.append(
                HostChange(
                    f"~ nic {nic}: offloads {','.join(on)} off",
                    f"ethtool -K {q(nic)} " + " ".join(f"{k} off" for k in on),
                )
            )
    h = spec.host_os if isinstance(spec, BridgeSpec) else None
    if h is None:
        return tuple(out)
    dev = q(h.device)
    unit, sysctl, watch, links = _paths(h, facts.own_service_unit)
    files = {unit: unit_text(h), sysctl: sysctl_text(h), watch: watch_unit_text(h), **dict(h.files)}
    for path, text in files.items():
        if facts.files.get(path, "").rstrip("\n") != text.rstrip("\n"):
            out.append(HostChange(f"~ file {path}", _write(path, text)))
    for link, target in links.items():
        if facts.links.get(link, "") != target:
            out.append(
                HostChange(
                    f"~ enable {link.rsplit('/', 1)[1]} ({link.rsplit('/', 2)[1]})",
                    f"mkdir -p {q(link.rsplit('/', 1)[0])} && ln -sfn {q(target)} {q(link)}",
                )
            )
    if (h.ip_forward) != facts.ip_forward:
        out.append(
            HostChange(
                f"~ net.ipv4.ip_forward = {int(h.ip_forward)}",
                f"echo {int(h.ip_forward)} > /proc/sys/net/ipv4/ip_forward",
            )
        )
    if h.mac and (facts.mac != h.mac or not facts.device_exists):
        out.append(
            HostChange(f"~ {h.device} MAC {h.mac}", f"ip link set dev {dev} address {h.mac}")
        )
    if h.address not in facts.addresses or not facts.device_exists:
        out.append(
            HostChange(
                f"+ {h.device} address {h.address}", f"ip address replace {h.address} dev {dev}"
            )
        )
    for extra in facts.addresses:
        if extra != h.address:
            out.append(
                HostChange(f"- {h.device} address {extra}", f"ip address del {extra} dev {dev}")
            )
    if not facts.device_up:
        out.append(HostChange(f"~ {h.device} up", f"ip link set {dev} up"))
    want = {(r.network, r.via) for r in h.routes}
    for r in h.routes:
        if (r.network, r.via) not in facts.routes or not facts.device_exists:
            out.append(
                HostChange(
                    f"+ route {r.network} via {r.via} dev {h.device}",
                    f"ip route replace {r.network} via {r.via} dev {dev}",
                )
            )
    for net, via in facts.routes:
        if (net, via) not in want:
            out.append(
                HostChange(
                    f"- route {net} via {via} dev {h.device}",
                    f"ip route del {net} via {via} dev {dev}",
                )
            )
    if any(c.summary.startswith("~ file") for c in out):
        # Only where systemd runs (a VM); the lab has the files, not the manager.
        out.append(
            HostChange(
                "~ systemd daemon-reload",
                "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi",
            )
        )
    if not facts.watcher_running or any(c.summary == f"~ file {watch}" for c in out):
        out.append(HostChange(f"~ tap watcher {watch_unit_name(h)}: (re)start", _start_watcher(h)))
    if h.retired_host_key and facts.host_key == key_id(h.retired_host_key):
        out.append(
            HostChange(
                "~ ssh host key: a new one (the user data's served the first contact only)",
                new_host_key(),
            )
        )
    return tuple(out)


def new_host_key() -> str:
    """Shell: a new ed25519 host key in sshd's place (written aside, moved in), sshd reloaded
    (SIGHUP: sessions keep running, new connections get the new key)."""
    k = HOST_KEY
    return (
        f"rm -f {k}.new {k}.new.pub && ssh-keygen -q -t ed25519 -N '' -C '' -f {k}.new"
        f" && mv -f {k}.new {k} && mv -f {k}.new.pub {k}.pub && systemctl reload ssh.service"
    )


def _start_watcher(h: HostOsSpec) -> str:
    """systemd restarts the unit; elsewhere the old watcher's process group is stopped and the
    same script started detached (its own session and group), its PID in the pid file."""
    q = shlex.quote
    pid = q(watch_pid_file(h))
    return (
        f"if [ -d /run/systemd/system ]; then systemctl restart {q(watch_unit_name(h))}; else "
        f'p=$(cat {pid} 2>/dev/null || true); [ -n "$p" ] && kill -- "-$p" 2>/dev/null || true; '
        f"mkdir -p {q(WATCH_PID_DIR)} && "
        f"{{ setsid sh -c {q(watch_script(h))} </dev/null >/dev/null 2>&1 & echo $! > {pid}; }}; fi"
    )


def apply_script(spec: ServerSpec | BridgeSpec, changes: tuple[HostChange, ...]) -> str:
    """One shell script for all changes; waits (bounded) for the tap to exist first."""
    lines = ["set -e"]
    if isinstance(spec, BridgeSpec) and spec.host_os is not None:
        lines.append(wait_for_device(spec.host_os.device, TAP_WAIT_S))
    lines += [c.shell for c in changes]
    return "\n".join(lines) + "\n"


def wait_for_device(device: str, seconds: float) -> str:
    """Shell: wait until /sys/class/net/<device> exists (bounded), fail if it never does.

    The one tap wait: the apply script (so also a bridge restart's converge) and the unit's
    ExecStart (through `_exec_sh`) run this text."""
    n = max(1, int(seconds * 10))
    path = shlex.quote(f"/sys/class/net/{device}")
    missing = shlex.quote(f"device {device} did not appear")
    return (
        f"i=0; while [ ! -e {path} ] && [ $i -lt {n} ]; do sleep 0.1; i=$((i+1)); done; "
        f"[ -e {path} ] || {{ echo {missing} >&2; exit 3; }}"
    )
