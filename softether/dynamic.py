"""A thin `pulumi.dynamic` resource that converges one live SoftEther node over SSH.

Type token: `pulumi-python:dynamic/softether:SoftEtherNode`.
- create/update: `Session(ssh_transport(target), spec).converge()`;
- diff: compares the normalised spec (a keyed digest) and the target. A bridge's `machine`
  input is its VM's identity (`instance.id` / `vm.vm_id`): another machine (also at the same
  public address) is a replacement; a node without one (the home server) is replaced when its
  host changes. During preview any input may be unknown (`pulumi.output.Unknown`): the answer
  is then "changes", a replacement only if the machine is the unknown or changed part;
- read (`pulumi refresh`, `preview --refresh`): reads the node over SSH and plans against
  the spec; drift made by hand shows as `drift` (the planned changes, masked) and a digest
  that no longer matches, so the next up updates (converges) the node; a converged node
  reads back exactly as stored. A node that cannot be reached (a stopped VM, one still
  booting, an operator outside `operatorCidr`) is not waited for: after a short connect
  deadline its `drift` says so and why, the refresh goes on, and the next up converges it;
- host keys: the target's host key is the one the VM got in its user data; a bridge's spec
  retires it, so its first converge gives the VM a new one (`host_key` output, changed once).
  Update and read reach the same machine with the stored `host_key`; a new machine (a
  replacement) starts again from its user data's;
- rotation (README "Rotate"): update hands the session the stored spec as the node's
  previous one, so a changed cascade password is set and reconnected with a check, and a
  node that refuses the new admin password is reached with the old one to set it (`rotated`
  output: what rotated, with its steps). The home server is updated before the bridges (they
  depend on it), so a cascade's new password is on the server's user before the bridge uses it;
  a failed update keeps the stored spec, and the next up starts again from both;
- delete: a no-op (the VM goes away with the stack; the home server is the user's);
- outputs: host, kind, host key, digest, last diff and drift (masked), traffic, what a server's first
  converge adopted and what it leaves alone; and, as Pulumi secrets, the spec and target
  that `read` needs to reach the node (the engine passes Read only the stored outputs);
- pickled by reference (dill): the provider holds no attributes, heavy imports are inside
  the methods, and everything lives in this importable module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult
from pulumi.output import Unknown
from pulumi.runtime import rpc

log = logging.getLogger("softether.dynamic")

NODE_TYPE = "pulumi-python:dynamic/softether:SoftEtherNode"
# Inputs the program passes as Pulumi secrets (also stored as secret outputs for `read`).
SECRET_INPUTS = ("spec", "target")
DRIFTED = "drifted"  # the digest a node with hand-made drift reads back with
READ_DEADLINE_S = 15.0  # how long a refresh tries to reach a node
READ_REFUSED_S = 5.0  # ... and how long it retries a port that refuses (a node down)
# How a node is reached, not what it is: not part of its digest (a new deadline changes nothing).
REACH = {"private_key", "connect_deadline_s", "refused_deadline_s"}


def _plain(value: Any) -> Any:
    """A property with any wire-form secret unwrapped (the engine unwraps them for a provider
    that does not accept secrets; this keeps the provider right either way)."""
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _unknown(value: Any) -> bool:
    """True if a preview value is, or holds, a value not known yet."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, dict):
        return any(_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_unknown(v) for v in value)
    return False


def _spec(props: dict[str, Any]) -> Any:
    from softether.spec import spec_from_dict

    return spec_from_dict(_plain(props["spec"]))


def _target(props: dict[str, Any], pinned: str | None = None) -> Any:
    """The node's SshTarget; `pinned`: the host key the node holds now (it replaced the one
    its user data gave it, which the target names and which served the first contact only)."""
    from softether.spec import SshTarget

    target = SshTarget.model_validate(_plain(props["target"]))
    return target.model_copy(update={"host_key": pinned}) if pinned else target


def _pinned(olds: dict[str, Any], news: dict[str, Any]) -> str | None:
    """The host key stored for the same machine (None after a replacement: a new VM starts
    with its user data's)."""
    return olds.get("host_key") if olds.get("machine") == news.get("machine") else None


def spec_digest(props: dict[str, Any]) -> str:
    """HMAC (keyed with the admin password) of the normalised spec and the target's identity."""
    from softether.spec import spec_to_dict

    spec, target = _spec(props), _target(props)
    canonical = json.dumps(
        {
            "spec": spec_to_dict(spec, reveal=True),
            "target": target.model_dump(mode="json", exclude=REACH),
        },
        sort_keys=True,
    )
    key = spec.admin_password.get_secret_value().encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _footprint(spec: Any, node: Any) -> tuple[list[str], list[str]]:
    """(what of the spec a server already had, the hubs and L3 switches it has that the spec
    leaves alone)."""
    wanted = {h.name.lower() for h in spec.hubs}
    switches = {s.name.lower() for s in spec.l3_switches}
    adopted = [f"hub {h.name}" for h in spec.hubs if node.hub(h.name) is not None]
    adopted += [
        f"local bridge {b.hub} -> {b.device}"
        for b in spec.local_bridges
        if any((c.hub.lower(), c.device) == (b.hub.lower(), b.device) for c in node.bridges)
    ]
    untouched = [f"hub {h.name}" for k, h in sorted(node.hubs.items()) if k not in wanted]
    untouched += [f"L3 switch {s.name}" for k, s in sorted(node.l3_switches.items()) if k not in switches]
    return adopted, untouched


def _traffic(spec: Any, checked: bool) -> str | None:
    if spec.kind != "bridge":
        return None
    if checked:
        return "verified"
    if spec.traffic_check is None:
        return "deferred: the home server is not configured by the stack yet"
    return "not checked: the cascade did not change"


def _converge(
    props: dict[str, Any],
    footprint: tuple[list[str], list[str]] | None,
    pinned: str | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Converge the node; `footprint` None: the first converge, which records what the
    server already had (else the recorded one is kept); `pinned`: see `_target`;
    `previous`: the stored outputs, whose spec is what the node held (a rotation's old side)."""
    from softether.session import Session
    from softether.transport import ssh_transport

    spec, target = _spec(props), _target(props, pinned)
    transport = ssh_transport(target)
    try:
        before = _spec(previous) if previous and "spec" in previous else None
        session = Session(transport, spec, previous=before)
        if footprint is None:
            footprint = _footprint(spec, session.read_node()) if spec.kind == "server" else ([], [])
        result = session.converge()
        # A server's certificate is public; the bridges' cascades pin it.
        certificate = session.server_certificate() if spec.kind == "server" else None
    finally:
        transport.close()
    return {
        "certificate": certificate,
        "host": target.host,
        "port": target.port,
        # The host key it holds now (a bridge's first converge replaced its user data's).
        "host_key": result.host_key or target.host_key,
        "kind": spec.kind,
        "machine": props.get("machine"),
        "digest": spec_digest(props),
        "changed": result.changed,
        "diff": result.diff,
        "drift": [],
        "traffic": _traffic(spec, result.traffic_checked),
        "rotated": list(result.rotated),
        "adopted": footprint[0],
        "untouched": footprint[1],
        **{k: rpc.wrap_rpc_secret(_plain(props[k])) for k in SECRET_INPUTS},
    }


def _drift(props: dict[str, Any], pinned: str | None) -> list[str]:
    """The changes a converge would make now (masked): empty for a converged node; a node
    that cannot be reached within READ_DEADLINE_S: one line, `unreachable: <why>`."""
    from softether.errors import TransportError
    from softether.session import Session
    from softether.transport import ssh_transport

    spec, target = _spec(props), _target(props, pinned)
    short = {
        "connect_deadline_s": min(target.connect_deadline_s, READ_DEADLINE_S),
        "refused_deadline_s": min(target.refused_deadline_s, READ_REFUSED_S),
    }
    transport = ssh_transport(target.model_copy(update=short))
    try:
        session = Session(transport, spec)
        return [session.mask(line) for line in session.compare().lines()]
    except TransportError as e:
        log.warning("softether node %s: not read: %s", target.host, e)
        return [f"unreachable: {e}"]
    finally:
        transport.close()


class SoftEtherProvider(ResourceProvider):
    """Create/update converge the node; see the module docstring."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = _converge(props, None)
        return CreateResult(id_=f"softether-{outs['kind']}-{outs['host']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        machine = news.get("machine")
        if machine is not None:
            moved = _unknown(machine) or machine != olds.get("machine")
            replaces = ["machine"] if moved else []
        else:
            target = news["target"]
            host = None if _unknown(target) else _plain(target).get("host")
            replaces = ["target"] if host is not None and host != olds.get("host") else []
        unknown = any(_unknown(news.get(k)) for k in SECRET_INPUTS)
        changed = bool(replaces) or unknown or olds.get("digest") != spec_digest(news)
        return DiffResult(
            changes=changed,
            replaces=replaces,
            stables=[],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        footprint = (list(olds.get("adopted") or []), list(olds.get("untouched") or []))
        return UpdateResult(outs=_converge(news, footprint, _pinned(olds, news), olds))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outs = {k: v for k, v in props.items() if k != "__provider"}
        if not all(k in props for k in SECRET_INPUTS):
            return ReadResult(id_, outs)  # state written before outputs held what Read needs
        drift = _drift(props, props.get("host_key"))
        outs |= {k: rpc.wrap_rpc_secret(_plain(props[k])) for k in SECRET_INPUTS}
        outs["drift"] = drift
        outs["digest"] = DRIFTED if drift else spec_digest(props)
        return ReadResult(id_, outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The node (a VM) is destroyed with its stack; the home server is the user's and
        # keeps its configuration (README "Left behind on purpose").
        log.info("softether node %s: nothing to undo remotely", props.get("host"))


class SoftEtherNode(pulumi.dynamic.Resource, module="softether", name="SoftEtherNode"):
    """One SoftEther node converged to `spec` (a ServerSpec/BridgeSpec dict with secrets
    revealed) over SSH `target` (an SshTarget dict). Both are passed as Pulumi secrets."""

    host: pulumi.Output[str]
    kind: pulumi.Output[str]
    digest: pulumi.Output[str]
    diff: pulumi.Output[str]
    certificate: pulumi.Output[str | None]  # a server's certificate (PEM), for the cascades
    host_key: pulumi.Output[str]  # the SSH host key the node holds (a bridge's: its own, new)
    traffic: pulumi.Output[str | None]  # a bridge's: verified / deferred / not checked
    rotated: pulumi.Output[list[str]]  # credentials the last update rotated, with their steps
    adopted: pulumi.Output[list[str]]  # what a server already had at its first converge
    untouched: pulumi.Output[list[str]]  # hubs and L3 switches of the server the stack leaves alone

    def __init__(
        self,
        name: str,
        spec: pulumi.Input[dict[str, Any]],
        target: pulumi.Input[dict[str, Any]],
        machine: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = node_props(pulumi.Output.secret(spec), pulumi.Output.secret(target), machine)
        super().__init__(SoftEtherProvider(), name, props, opts)


def node_props(spec: Any, target: Any, machine: Any = None) -> dict[str, Any]:
    """The inputs of a SoftEtherNode as the program registers them (outputs declared None)."""
    return {
        "spec": spec,
        "target": target,
        "machine": machine,
        "host": None,
        "kind": None,
        "digest": None,
        "diff": None,
        "changed": None,
        "port": None,
        "certificate": None,
        "host_key": None,
        "drift": None,
        "traffic": None,
        "rotated": None,
        "adopted": None,
        "untouched": None,
    }
