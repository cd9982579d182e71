"""The lab handle: a stack's lab (its layout, its record, its nodes) and the ways in.

`open_lab` builds it from the stack and the record without starting or building anything
(each node pointed at its SoftEther release: `softether_options`, `use_release`); `specs` are
the nodes' specs with the lab's secrets, `transport`/`session` reach a node over SSH from
the operator's namespace, `running`/`refresh_pids` read what lives. `lab up`, `status`,
`test`, `outputs`, the faults and the benchmarks all work through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from components.firewall import bridge_ruleset
from softether.derive import NodeSpecs, derive, failover_config, retiring, secret_names
from softether.session import Session
from softether.spec import BridgeSpec, ServerSpec, SshTarget
from softether.transport import SshTransport, ssh_transport
from topology import SoftEtherOptions, Stack, load_stack, plan_routes
from topology.clouds import bridge_image

from . import image, proc, softether_build
from .layout import SERVER_PUBLIC, Layout, build_layout, lab_id
from .node import COMPAT_LIBRARY, Node, client_key_file, generate_client_key, netns_socket
from .proc import LabError
from .state import LabState, lab_dir, mark
from .vm import VmNode

SSH_DEADLINE_S = 30.0
VM_SSH_DEADLINE_S = 120.0  # a booted bridge with its build in the image: sshd in 5-15 s


@dataclass
class Lab:
    """A stack's lab: its layout, its record and its nodes (by node name: a site's first
    bridge under the site's name, a pair's second as `<site>-b`)."""

    ref: str
    stack: Stack
    layout: Layout
    state: LabState
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def client_key(self) -> tuple[str, str]:
        return generate_client_key(self.state.directory / "client")

    @property
    def client_key_file(self) -> Path:
        """The operator's private key for this lab (`hybrid lab outputs` names it)."""
        return client_key_file(self.state.directory / "client")


def open_lab(
    ref: str,
    root: Path | None = None,
    preload: bool | None = None,
    source: Literal["upstream", "debian"] | None = None,
    boot: bool | None = None,
) -> Lab:
    """The lab of stack `ref` (running or not); nothing is started or built.

    Each node runs the SoftEther release the stack's `network.softether` selects
    (lab.softether_build); a node that was started keeps the release recorded for it.
    `source` overrides the stack's choice and `preload` (Debian's build only: the OpenSSL-3
    compatibility library, lab/node.py says why; default True) can turn the library off;
    both are kept for the lab's later commands and exist to measure side by side
    (bench/lab_faults.py).
    """
    stack = load_stack(ref)
    directory = lab_dir(ref, root)
    layout = build_layout(stack, ref, lab_id(str(directory)))
    state = LabState.load(directory) or LabState(directory, ref, layout.lab_id)
    if preload is not None:
        state.extra["preload"] = preload
    if source is not None:
        state.extra["source"] = source
    if boot is not None:
        if state.pids and state.extra.get("boot", True) != boot:
            raise LabError(
                f"lab {directory}: its bridges run {'booted' if not boot else 'unbooted'}; "
                "hybrid lab down first to change that"
            )
        state.extra["boot"] = boot
    lab = Lab(ref, stack, layout, state)
    try:
        chosen = softether_build.cached_release(softether_options(lab))
    except LabError:  # a broken build: `up` rebuilds it (softether_build.release) and says so
        chosen = None
    started: dict[str, dict[str, str]] = state.extra.get("softether", {})
    built = image.cached()
    for v in layout.nodes:
        key = v.ns.rsplit("-", 1)[1]
        release = softether_build.Release.from_record(started[key]) if key in started else chosen
        state_dir, env = directory / "nodes" / key, mark(directory)
        node: Node
        if v.kind == "server":
            port = stack.network.home.vpn_server.port
            node = Node(key, "server", v.ns, state_dir, v.public, admin_port=port, env=env)
        elif booted(lab):
            recorded = started.get(key, {}).get("image")
            root = Path(recorded) if recorded else built.root if built else None
            site = stack.network.site(v.site)
            config, binds = lab_failover(lab, v.name)
            node = VmNode(
                key, "bridge", v.ns, state_dir, v.public, env=env, image=root,
                options=softether_options(lab), made_from=bridge_image(site.cloud, site.bridge_size),
                ruleset=bridge_ruleset(stack), failover=config, binds=binds,
            )  # fmt: skip
        else:
            node = Node(key, "bridge", v.ns, state_dir, v.public, env=env)
        use_release(lab, node, release)
        # Only the recorded processes that still are (a reused PID is someone else's).
        node.pids = {
            k.split("/", 1)[1]: pid
            for k in state.pids
            if k.startswith(f"{key}/") and (pid := state.live(k))
        }
        node.host_key = node.known_host_key()
        lab.nodes[v.name] = node
    return lab


def lab_failover(lab: Lab, node: str) -> tuple[str | None, tuple[tuple[Path, str], ...]]:
    """A pair's bridge in the lab: its failover controller's config with the lab driver (the
    site router's routes stand for the cloud route table: it moves them with `ip -n`), and
    the router's namespace bound into the machine read-only for that; (None, ()) else."""
    net = lab.stack.network
    vm = next(v for v in net.bridge_vms if v.node == node)
    if vm.role is None:
        return None, ()
    router = lab.layout.router(vm.site).name
    driver = {
        "kind": "lab",
        "netns": router,
        "prefixes": [str(d) for d in plan_routes(net).route_table(vm.site).destinations],
        "via": str(vm.private_address),
    }
    netns = f"/run/netns/{router}"
    return json.dumps(failover_config(net, vm, driver), indent=2), ((Path(netns), netns),)


def booted(lab: Lab) -> bool:
    """The lab's cloud bridges are booted machines (lab/vm.py), as `open_lab` was told; the
    default for a new lab."""
    return bool(lab.state.extra.get("boot", True))


def softether_options(lab: Lab) -> SoftEtherOptions:
    """The stack's `network.softether`, with the source `open_lab` was told to use."""
    options = lab.stack.network.softether
    source = lab.state.extra.get("source")
    return options.model_copy(update={"source": source}) if source else options


def use_release(lab: Lab, node: Node, release: softether_build.Release | None) -> None:
    """Point `node` at `release`'s binaries (None: an upstream build not made yet)."""
    debian = release is not None and release.source == "debian"
    node.softether_root = release.root if release else None
    node.softether_label = release.label if release else ""
    preload = debian and lab.state.extra.get("preload", True)
    node.compat_library = lab.state.directory / "compat" / COMPAT_LIBRARY if preload else None


def running(node: Node) -> bool:
    """The node's holder lives, is the lab's, and is in the node's namespace: one deleted by
    hand (and made anew by `up`) leaves it running where nothing reaches it."""
    holder = node.pids.get("holder")
    return node.owns(holder) and proc.netns_of(holder or 0) == proc.netns_id(node.netns)


def refresh_pids(lab: Lab) -> None:
    """Re-read each running node's SoftEther PID: a restart (or SoftEther's own watchdog)
    replaces the worker process, and the record must name the live one."""
    fresh: dict[str, int | None] = {}
    for node in lab.nodes.values():
        if running(node):
            pid = node.softether_pid()
            node.pids["softether"] = pid
            fresh[f"{node.name}/softether"] = pid
    lab.state.record(fresh)


def specs(
    lab: Lab, create: bool = False, server_cert: str | None = None, certificate_rotation: int = 0
) -> NodeSpecs:
    """The nodes' specs with the lab's secrets; only `up` creates missing secrets (`create`),
    everything else reads them (a read-only `status` writes nothing). `server_cert`: pinned in
    the cascades, `certificate_rotation`: the home server's (both as `softether.derive`; the
    lab's `up` pins nothing, `lab.rotate` pins)."""
    net = lab.stack.network
    # Every bridge node restarts the same way (the vpnbridge binary, the shared compat library).
    bridge = next(n for n in lab.nodes.values() if n.kind == "bridge")
    derived = derive(
        net,
        plan_routes(net),
        lab.state.secrets(secret_names(net), create=create),
        server_address=str(SERVER_PUBLIC.ip),
        restart_command=bridge.restart_command,
        server_cert=server_cert,
        certificate_rotation=certificate_rotation,
    )
    # A booted bridge, like the cloud's, gets a host key of its own at its first converge.
    first = {
        site: n.make_first_contact_key() if create else n.first_contact_key
        for site, n in lab.nodes.items()
        if isinstance(n, VmNode)
    }
    return retiring(derived, first)


def transport(lab: Lab, node: Node) -> SshTransport:
    """SSH to `node` from the operator's place on the lab's internet (the socket is opened in
    that namespace), host key pinned to the one generated for the node."""
    operator = lab.layout.operator_ns
    # A booted bridge refuses SSH while it boots, as the cloud's does (components/bridge.py).
    vm = isinstance(node, VmNode)
    target = SshTarget(
        host=node.host,
        host_key=node.host_key,
        private_key=SecretStr(lab.client_key[0]),
        connect_deadline_s=VM_SSH_DEADLINE_S if vm else SSH_DEADLINE_S,
        refused_deadline_s=VM_SSH_DEADLINE_S
        if vm
        else SshTarget.model_fields["refused_deadline_s"].default,
    )
    return ssh_transport(
        target, lambda host, port, timeout: netns_socket(operator, host, port, timeout)
    )


def session(lab: Lab, site: str, spec: ServerSpec | BridgeSpec) -> Session:
    return Session(transport(lab, lab.nodes[site]), spec)
