"""A thin `pulumi.dynamic` resource that converges one live SoftEther node over SSH.

Type token: `pulumi-python:dynamic/softether:SoftEtherNode`.
- create/update: `Session(ssh_transport(target), spec).converge()`;
- diff: compares the normalised spec (a keyed digest, so no secret is stored) and the target;
  a different host means a different machine: replace;
- delete: best effort (the VM usually goes away with it): remove what the spec created;
- outputs: host, kind, digest, last diff (masked): never a secret;
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
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

log = logging.getLogger("softether.dynamic")


def _spec(props: dict[str, Any]) -> Any:
    from softether.spec import spec_from_dict

    return spec_from_dict(dict(props["spec"]))


def _target(props: dict[str, Any]) -> Any:
    from softether.spec import SshTarget

    return SshTarget.model_validate(dict(props["target"]))


def spec_digest(props: dict[str, Any]) -> str:
    """HMAC (keyed with the admin password) of the normalised spec and the target's identity."""
    from softether.spec import spec_to_dict

    spec, target = _spec(props), _target(props)
    canonical = json.dumps(
        {
            "spec": spec_to_dict(spec, reveal=True),
            "target": target.model_dump(mode="json", exclude={"private_key"}),
        },
        sort_keys=True,
    )
    key = spec.admin_password.get_secret_value().encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _converge(props: dict[str, Any]) -> dict[str, Any]:
    from softether.session import Session
    from softether.transport import ssh_transport

    spec, target = _spec(props), _target(props)
    transport = ssh_transport(target)
    try:
        session = Session(transport, spec)
        result = session.converge()
        # A server's certificate is public; the bridges' cascades pin it.
        certificate = session.server_certificate() if spec.kind == "server" else None
    finally:
        transport.close()
    return {
        "certificate": certificate,
        "host": target.host,
        "port": target.port,
        "kind": spec.kind,
        "digest": spec_digest(props),
        "changed": result.changed,
        "diff": result.diff,
    }


class SoftEtherProvider(ResourceProvider):
    """Create/update converge the node; see the module docstring."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = _converge(props)
        return CreateResult(id_=f"softether-{outs['kind']}-{outs['host']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        target = _target(news)
        replaces = ["target"] if olds.get("host") != target.host else []
        changed = bool(replaces) or olds.get("digest") != spec_digest(news)
        return DiffResult(
            changes=changed,
            replaces=replaces,
            stables=[],
            delete_before_replace=False,
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_converge(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Outputs hold no secret, so there is nothing to log in to the node with: the node
        # (a VM) is destroyed with its stack. Best effort by design.
        log.info("softether node %s: nothing to undo remotely", props.get("host"))


class SoftEtherNode(pulumi.dynamic.Resource, module="softether", name="SoftEtherNode"):
    """One SoftEther node converged to `spec` (a ServerSpec/BridgeSpec dict with secrets
    revealed) over SSH `target` (an SshTarget dict). Both are passed as Pulumi secrets."""

    host: pulumi.Output[str]
    kind: pulumi.Output[str]
    digest: pulumi.Output[str]
    diff: pulumi.Output[str]
    certificate: pulumi.Output[str | None]  # a server's certificate (PEM), for the cascades

    def __init__(
        self,
        name: str,
        spec: pulumi.Input[dict[str, Any]],
        target: pulumi.Input[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "spec": pulumi.Output.secret(spec),
            "target": pulumi.Output.secret(target),
            "host": None,
            "kind": None,
            "digest": None,
            "diff": None,
            "changed": None,
            "port": None,
            "certificate": None,
        }
        super().__init__(SoftEtherProvider(), name, props, opts)
