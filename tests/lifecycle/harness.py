"""Drive the SoftEther dynamic provider as the Pulumi engine does, through the SDK's own host.

`ProviderHost` starts `python -m pulumi.dynamic` (the process the engine starts for a Python
dynamic provider) inside a network namespace of the lab, reads the port it announces on
stdout, and speaks to it with `ResourceProviderStub`. The host listens on 127.0.0.1 of that
namespace; a small relay hands the test's gRPC channel a Unix socket whose connections are
opened inside the namespace (`lab.node.netns_socket`), so nothing listens in the root
namespace's network.

Properties are encoded as the engine encodes them: `__provider` is the provider serialized by
the SDK's own `serialize_provider`; a value not known during preview is the unknown sentinel
(`rpc.UNKNOWN`); a secret travels in wire form (`rpc.wrap_rpc_secret`) only if the provider's
`Configure` answered `acceptSecrets`, and as its plain value otherwise (the engine strips
secrets for providers that do not accept them).

The engine's call order is the table `CALLS` below, and nothing else of the engine is here.
Source: Pulumi's provider protocol reference
(https://www.pulumi.com/docs/iac/guides/building-extending/providers/implementers/protocol-reference/)
and the comments of pulumirpc `provider.proto`: Check validates the new inputs against the
old ones; Diff compares the old state (outputs) with the checked inputs; Create/Update are
only called by `up` (a preview calls no mutating method of a provider that does not declare
`supportsPreview`, and passes values not yet known as unknowns); a replacement is Create of
the new resource, then Delete of the old (Delete first when Diff says
`deleteBeforeReplace`); `refresh` calls Read with the stored outputs (and inputs) and stores
what it returns; `destroy` calls Delete with the stored outputs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2 as pb
from pulumi.runtime.proto.provider_pb2_grpc import ResourceProviderStub

from lab.node import netns_socket
from softether.dynamic import NODE_TYPE, SECRET_INPUTS, SoftEtherProvider

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "__provider"
CALL_TIMEOUT_S = 300.0  # a create converges over SSH; bounded

# The engine's calls per operation (see the module docstring for the source).
CALLS: dict[str, tuple[str, ...]] = {
    "preview, new resource": ("Check",),
    "preview, existing resource": ("Check", "Diff"),
    "up, new resource": ("Check", "Create"),
    "up, existing resource": ("Check", "Diff", "Update if changed in place"),
    "up, replacement": ("Check", "Diff", "Create (new)", "Delete (old)"),
    "up, replacement, deleteBeforeReplace": ("Check", "Diff", "Delete (old)", "Create (new)"),
    "refresh": ("Read",),
    "destroy": ("Delete",),
}


# A value the program does not know yet during preview (sent as `rpc.UNKNOWN`); the SDK's
# own class, which is also what the host decodes the sentinel to.
UNKNOWN = Unknown()


def _wire(value: Any, keep_secrets: bool, secret: bool = False) -> Any:
    """A Python value as the engine puts it on the wire (before Struct encoding)."""
    if isinstance(value, Unknown):
        out: Any = rpc.UNKNOWN
    elif rpc.is_rpc_secret(value):
        return _wire(rpc.unwrap_rpc_secret(value), keep_secrets, True)
    elif isinstance(value, Mapping):
        out = {k: _wire(v, keep_secrets) for k, v in value.items() if v is not None}
    elif isinstance(value, (list, tuple)):
        out = [_wire(v, keep_secrets) for v in value]
    else:
        out = value
    return rpc.wrap_rpc_secret(out) if secret and keep_secrets else out


def _struct(props: Mapping[str, Any], keep_secrets: bool) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_wire(props, keep_secrets))
    return s


def _decode(s: struct_pb2.Struct) -> dict[str, Any]:
    """A provider's answer as the engine stores it (secrets kept in wire form)."""
    return {k: v for k, v in rpc.deserialize_properties(s, True).items() if k != PROVIDER_KEY}


@dataclass
class Stored:
    """The engine's state of one resource."""

    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class Step:
    """What one operation did to one resource: the calls made, in order, and the Diff."""

    op: str
    calls: list[str]
    changes: bool = False
    replaces: tuple[str, ...] = ()
    delete_before_replace: bool = False


class _Relay:
    """A Unix socket in `directory` whose connections are opened inside `netns`."""

    def __init__(self, netns: str, port: int, directory: Path) -> None:
        self.path = directory / "provider.sock"
        self.netns, self.port = netns, port
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(8)
        self.server.settimeout(0.5)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = netns_socket(self.netns, "127.0.0.1", self.port, 10.0)
            # A call may take minutes (a converge): no idle timeout on either side.
            upstream.settimeout(None)
            client.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@dataclass
class ProviderHost:
    """`python -m pulumi.dynamic` in `netns`, spoken to over gRPC, driven per `CALLS`."""

    netns: str
    directory: Path
    state: dict[str, Stored] = field(default_factory=dict)
    accept_secrets: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    _relay: _Relay | None = None
    _channel: grpc.Channel | None = None
    _stub: Any = None

    def start(self) -> ProviderHost:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PULUMI_PROJECT": "hybrid-cloud"}
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "pulumi.dynamic"],
            stdout=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()  # the port it announces
        if not line.isdigit():
            raise RuntimeError(f"pulumi.dynamic announced no port: {line!r}")
        self._relay = _Relay(self.netns, int(line), self.directory)
        self._channel = grpc.insecure_channel(f"unix:{self._relay.path}")
        grpc.channel_ready_future(self._channel).result(timeout=30)
        self._stub = ResourceProviderStub(self._channel)
        answer = self._stub.Configure(pb.ConfigureRequest(acceptSecrets=True), timeout=30)
        self.accept_secrets = answer.acceptSecrets
        return self

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._relay is not None:
            self._relay.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # by PID: the process this host started
            self._proc.wait(10)

    # ---- encoding ------------------------------------------------------------------------
    def _props(self, props: Mapping[str, Any]) -> struct_pb2.Struct:
        full = {**props, PROVIDER_KEY: serialize_provider(SoftEtherProvider())}
        return _struct(full, self.accept_secrets)

    @staticmethod
    def inputs(props: Mapping[str, Any]) -> dict[str, Any]:
        """The program's inputs as the SDK registers them: `SECRET_INPUTS` marked secret."""
        return {k: rpc.wrap_rpc_secret(v) if k in SECRET_INPUTS else v for k, v in props.items()}

    @staticmethod
    def _urn(name: str) -> str:
        return f"urn:pulumi:lab::hybrid-cloud::{NODE_TYPE}::{name}"

    # ---- the calls -----------------------------------------------------------------------
    def check(self, name: str, news: Mapping[str, Any]) -> dict[str, Any]:
        old = self.state.get(name)
        res = self._stub.Check(
            pb.CheckRequest(
                urn=self._urn(name),
                olds=self._props(old.inputs if old else {}),
                news=self._props(news),
            ),
            timeout=CALL_TIMEOUT_S,
        )
        if res.failures:
            raise AssertionError(f"Check failed: {[(f.property, f.reason) for f in res.failures]}")
        return _decode(res.inputs)

    def _against_stored(self, name: str, news: Mapping[str, Any]) -> dict[str, Any]:
        """The fields Diff and Update share: the stored resource and the checked new inputs."""
        old = self.state[name]
        return {
            "id": old.id,
            "urn": self._urn(name),
            "olds": self._props(old.outputs),
            "news": self._props(news),
            "old_inputs": self._props(old.inputs),
        }

    def diff(self, name: str, news: Mapping[str, Any]) -> pb.DiffResponse:
        return self._stub.Diff(
            pb.DiffRequest(**self._against_stored(name, news)), timeout=CALL_TIMEOUT_S
        )

    def create(self, name: str, news: Mapping[str, Any]) -> Stored:
        res = self._stub.Create(
            pb.CreateRequest(urn=self._urn(name), properties=self._props(news)),
            timeout=CALL_TIMEOUT_S,
        )
        return Stored(res.id, dict(news), _decode(res.properties))

    def update(self, name: str, news: Mapping[str, Any]) -> Stored:
        res = self._stub.Update(
            pb.UpdateRequest(**self._against_stored(name, news)), timeout=CALL_TIMEOUT_S
        )
        return Stored(self.state[name].id, dict(news), _decode(res.properties))

    def delete(self, name: str, stored: Stored) -> None:
        self._stub.Delete(
            pb.DeleteRequest(
                id=stored.id,
                urn=self._urn(name),
                properties=self._props(stored.outputs),
                old_inputs=self._props(stored.inputs),
            ),
            timeout=CALL_TIMEOUT_S,
        )

    # ---- the operations, per CALLS -------------------------------------------------------
    def preview(self, name: str, props: Mapping[str, Any]) -> Step:
        news = self.check(name, self.inputs(props))
        if name not in self.state:
            return Step("preview", ["Check"], changes=True)
        d = self.diff(name, news)
        return Step(
            "preview",
            ["Check", "Diff"],
            changes=d.changes == pb.DiffResponse.DIFF_SOME,
            replaces=tuple(d.replaces),
            delete_before_replace=d.deleteBeforeReplace,
        )

    def up(self, name: str, props: Mapping[str, Any]) -> Step:
        news = self.check(name, self.inputs(props))
        if name not in self.state:
            self.state[name] = self.create(name, news)
            return Step("up", ["Check", "Create"], changes=True)
        d = self.diff(name, news)
        step = Step(
            "up",
            ["Check", "Diff"],
            changes=d.changes == pb.DiffResponse.DIFF_SOME,
            replaces=tuple(d.replaces),
            delete_before_replace=d.deleteBeforeReplace,
        )
        if step.replaces:
            old = self.state[name]
            if step.delete_before_replace:
                self.delete(name, old)
                self.state[name] = self.create(name, news)
                step.calls += ["Delete", "Create"]
            else:
                self.state[name] = self.create(name, news)
                self.delete(name, old)
                step.calls += ["Create", "Delete"]
        elif step.changes:
            self.state[name] = self.update(name, news)
            step.calls.append("Update")
        return step

    def refresh(self, name: str) -> bool:
        """Read; the stored outputs become what Read returned. True if they changed."""
        old = self.state[name]
        res = self._stub.Read(
            pb.ReadRequest(
                id=old.id,
                urn=self._urn(name),
                properties=self._props(old.outputs),
                inputs=self._props(old.inputs),
            ),
            timeout=CALL_TIMEOUT_S,
        )
        outputs = _decode(res.properties)
        self.state[name] = Stored(res.id or old.id, old.inputs, outputs)
        return outputs != old.outputs

    def destroy(self, name: str) -> None:
        self.delete(name, self.state.pop(name))

    def outputs(self, name: str) -> dict[str, Any]:
        """Stored outputs with secrets unwrapped (what `pulumi stack` would show revealed)."""
        return {k: rpc.unwrap_rpc_secret(v) for k, v in self.state[name].outputs.items()}


@contextlib.contextmanager
def provider_host(netns: str, directory: Path) -> Iterator[ProviderHost]:
    host = ProviderHost(netns, directory)
    try:
        yield host.start()
    finally:
        host.stop()
