"""The offline evaluation behind `hybrid plan`: the Pulumi program run in-process under
Pulumi's mocks, every resource recorded.

One harness for `hybrid plan`, `hybrid cloud-init` and the component and PaaS tests: `run_program("dev")`
builds the whole program for a stack file with no engine, no cloud and no credentials, and
returns a `ProgramRun` holding each registered resource (type, name, parent, the inputs as the
engine would see them) and the resolved stack exports.

Inputs are kept in Pulumi's wire form: camelCase keys, ints as floats, secrets as
`{SECRET_SIG_KEY: SECRET_SIG, "value": ...}` (so a test can tell a secret from a plain value);
`plain()` unwraps them. Provider-computed outputs (ids, addresses, generated passwords and
keys) come from `COMPUTED`, one function per resource type; add yours there.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc

from topology import Stack, read_stack_file, stack_file
from topology.load import OPERATOR_KEY, PROJECT

from . import sdk_private
from .sdk_private import SECRET_SIG, SECRET_SIG_KEY

Props = dict[str, Any]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def plain(value: Any) -> Any:
    """`value` with every wire-form secret replaced by its content."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Record:
    """One resource as the engine saw it. `parent` is the parent's URN ("" for the stack)."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: Props
    outputs: Props
    id: str = ""
    dependencies: tuple[str, ...] = ()  # URNs of explicit and input dependencies
    ignore_changes: tuple[str, ...] = ()

    def input(self, key: str) -> Any:
        """An input with secrets unwrapped (None when absent)."""
        return plain(self.inputs.get(key))


@dataclass(frozen=True)
class Export:
    value: Any
    secret: bool


@dataclass(frozen=True)
class ProgramRun:
    stack_name: str
    stack: Stack
    records: tuple[Record, ...]
    exports: dict[str, Export] = field(default_factory=dict)
    calls: tuple[Call, ...] = ()

    def of_type(self, type_: str) -> list[Record]:
        return [r for r in self.records if r.type == type_]

    def one(self, type_: str, name: str) -> Record:
        found = [r for r in self.records if r.type == type_ and r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {type_} named {name}")
        return found[0]

    def children(self, parent: Record) -> list[Record]:
        return [r for r in self.records if r.parent == parent.urn]

    def under(self, parent: Record) -> Iterator[Record]:
        """Every descendant of `parent`, depth first."""
        for child in self.children(parent):
            yield child
            yield from self.under(child)


# --- provider-computed outputs -------------------------------------------------------------


def _digest(*parts: str, size: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:size]


def _ed25519(seed: str) -> Props:
    """A real, deterministic ed25519 key pair in the attribute names pulumi-tls returns."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())
    pub = key.public_key()
    openssh_pub = pub.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()
    return {
        "privateKeyOpenssh": key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()
        ).decode(),
        "privateKeyPem": key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
        ).decode(),
        "publicKeyOpenssh": openssh_pub + "\n",
        "publicKeyPem": pub.public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeyFingerprintSha256": "SHA256:" + _digest(openssh_pub, size=43),
    }


def _softether_node(args: mocks.MockResourceArgs) -> Props:
    """A converged server returns its certificate (a real self-signed one here, a new one for
    each certificate rotation, as `ServerCertRegenerate` makes); a bridge the host key it holds
    after its first converge (a stand-in of its own)."""
    spec = plain(args.inputs.get("spec") or {})
    if spec.get("kind") != "server":
        return {"certificate": None, "host_key": _ed25519(f"rotated-{args.name}")["publicKeyOpenssh"].strip()}
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    rotation = int(spec.get("certificate_rotation") or 0)
    seed = f"{args.name}-{rotation}" if rotation else args.name
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, seed)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder(name, name, key.public_key(), 1, start, start.replace(year=2036))
        .sign(key, None)
    )
    return {"certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}


def _password(seed: str, args: mocks.MockResourceArgs) -> Props:
    length = int(args.inputs.get("length", 16))
    return {"result": ("Pw" + _digest("password", seed, size=64))[:length]}


def _azure_id(args: mocks.MockResourceArgs) -> Props:
    """Azure's `name` (the `<type>Name` input, else the logical name) and resource id."""
    _, provider, kind = args.typ.split(":")
    key = next((k for k in args.inputs if k.lower() == f"{kind.lower()}name"), None)
    name = args.inputs[key] if key else args.name
    rg = name if kind == "ResourceGroup" else args.inputs.get("resourceGroupName", "rg")
    return {
        "name": name,
        "id": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{rg}"
        f"/providers/Microsoft.{provider.capitalize()}/{kind}/{name}",
    }


def _eni(args: mocks.MockResourceArgs) -> Props:
    ips = args.inputs.get("privateIps") or ["192.0.2.10"]
    return {"privateIp": ips[0], "privateIps": ips}


def _public_ip(args: mocks.MockResourceArgs) -> Props:
    octet = int(_digest(args.name, size=2), 16) % 250 + 1
    return {"publicIp": f"198.51.100.{octet}", "ipAddress": f"198.51.100.{octet}"}


def _rds(args: mocks.MockResourceArgs) -> Props:
    host = f"{args.name}.c{_digest(args.name, size=10)}.ap-northeast-1.rds.amazonaws.com"
    return {"address": host, "endpoint": f"{host}:3306"}


def _iam_name(args: mocks.MockResourceArgs) -> Props:
    return {"name": args.inputs.get("name") or f"{args.name}-{_digest('iam', args.name, size=7)}"}


# Computed outputs by resource type, on top of the inputs echoed back and an id.
COMPUTED: dict[str, Callable[[mocks.MockResourceArgs], Props]] = {
    "pulumi-python:dynamic/softether:SoftEtherNode": _softether_node,
    "azure-native:web:WebApp": lambda a: {
        "defaultHostName": f"{a.inputs.get('name', a.name)}.azurewebsites.net"
    },
    "aws:ec2/networkInterface:NetworkInterface": _eni,
    "aws:ec2/eip:Eip": _public_ip,
    "aws:ec2/instance:Instance": _public_ip,
    "azure-native:network:PublicIPAddress": _public_ip,
    # The VM's identity, a GUID Azure assigns (the bridge's SoftEtherNode input `machine`).
    # A system-assigned identity gets its principal from Azure.
    "azure-native:compute:VirtualMachine": lambda a: {"vmId": _digest("vm", a.name, size=32)}
    | ({"identity": {**a.inputs["identity"], "principalId": _digest("principal", a.name, size=32)}} if a.inputs.get("identity") else {}),
    "aws:rds/instance:Instance": _rds,
    # IAM names not given are the provider's: the logical name and a random suffix.
    "aws:iam/role:Role": _iam_name,
    "aws:iam/instanceProfile:InstanceProfile": _iam_name,
}


# What the stack generates itself (keys, passwords): new in every stack generation, from a
# seed of the generation and the resource's name.
GENERATED: dict[str, Callable[[str, mocks.MockResourceArgs], Props]] = {
    "random:index/randomPassword:RandomPassword": _password,
    "random:index/randomString:RandomString": _password,
    "tls:index/privateKey:PrivateKey": lambda seed, _: _ed25519(seed),
}


# AWS id prefixes, so a plan reads like the console (an ENI id starts with eni-).
_AWS_PREFIX = {
    "NetworkInterface": "eni",
    "SecurityGroup": "sg",
    "RouteTable": "rtb",
    "InternetGateway": "igw",
}


def _aws_id(args: mocks.MockResourceArgs) -> Props:
    kind = args.typ.rsplit(":", 1)[-1]
    rid = f"{_AWS_PREFIX.get(kind, kind[:4].lower())}-{_digest(args.typ, args.name)}"
    return {"id": rid, "arn": f"arn:aws:{args.typ.split(':')[1].split('/')[0]}:::{rid}"}


def _ami(args: mocks.MockCallArgs) -> Props:
    names = [v for f in args.args.get("filters", []) for v in f.get("values", [])]
    arch = "arm64" if any("arm64" in n for n in names) else "x86_64"
    return {
        "id": f"ami-{_digest('ami', arch)}",
        "architecture": arch,
        "name": names[0] if names else "",
    }


CALLS: dict[str, Callable[[mocks.MockCallArgs], Props]] = {
    "aws:ec2/getAmi:getAmi": _ami,
    "azure-native:storage:listStorageAccountKeys": lambda a: {
        "keys": [{"keyName": "key1", "permissions": "FULL", "value": _digest("key", a.args.get("accountName", ""), size=64)}]
    },
    "azure-native:authorization:getClientConfig": lambda a: {
        "clientId": "00000000-0000-0000-0000-00000000c11e",
        "objectId": "00000000-0000-0000-0000-0000000000b1",
        "subscriptionId": "00000000-0000-0000-0000-000000000000",
        "tenantId": "00000000-0000-0000-0000-000000007e4a",
    },
    "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
        "accountId": "123456789012",
        "arn": "arn:aws:iam::123456789012:user/test",
        "userId": "AIDTEST",
    },
}


@dataclass(frozen=True)
class Call:
    """One provider function call (an invoke such as `aws.ec2.get_ami`) and its arguments."""

    token: str
    args: Props


class HybridMocks(pulumi.runtime.Mocks):
    """Echo inputs, add an id and the provider-computed outputs of `COMPUTED` (and of
    `GENERATED`, seeded with `generation`: another one, as after a destroy, makes every
    generated value new); answer invokes from `CALLS` and record them."""

    def __init__(self, generation: str = "") -> None:
        self.calls: list[Call] = []
        self.generation = generation

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict]:
        outputs: Props = dict(args.inputs)
        if args.typ.startswith("azure-native:"):
            outputs |= _azure_id(args)
        elif args.typ.startswith("aws:"):
            outputs |= _aws_id(args)
        if args.typ in COMPUTED:
            outputs |= COMPUTED[args.typ](args)
        if args.typ in GENERATED:
            # New keepers replace the resource: a new value, as pulumi-random makes one.
            keepers = args.inputs.get("keepers")
            seed = f"{self.generation}{args.name}" + (json.dumps(keepers, sort_keys=True) if keepers else "")
            outputs |= GENERATED[args.typ](seed, args)
        rid = outputs.pop("id", None) or f"{args.name}-id"
        return rid, outputs

    def call(self, args: mocks.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        self.calls.append(Call(args.token, _wire(args.args)))
        fn = CALLS.get(args.token)
        return (fn(args) if fn else {}), []


class RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, plus a record of each registration with its parent."""

    def __init__(self, mocks_: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks_)
        self.records: list[Record] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            state = self.resources[response.urn].state
            self.records.append(
                Record(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent="" if _is_stack(request.parent) else request.parent,
                    custom=bool(request.custom),
                    inputs=_wire(inputs),
                    outputs=_wire(state),
                    id=response.id,
                    dependencies=tuple(request.dependencies),
                    ignore_changes=tuple(request.ignoreChanges),
                )
            )
        return response


def _is_stack(urn: str) -> bool:
    return urn.split("::")[2:3] == ["pulumi:pulumi:Stack"]


def _wire(props: Mapping[str, Any]) -> Props:
    """Deserialized properties back in wire form: secrets marked, JSON-like values only."""
    return json.loads(json.dumps(props, default=_marker))


def _marker(value: Any) -> Any:
    return {"__unserializable": type(value).__name__}


def _config_for_pulumi(config: Mapping[str, Any]) -> dict[str, str]:
    """A stack file's `config:` as Pulumi hands it to a program: every value a string."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


MOCK_SECRET = "encrypted-secret-not-decrypted-under-mocks"
# Encrypted values the program parses: a stand-in of their kind (the mocks cannot decrypt).
MOCK_TYPED_SECRETS = {
    f"{PROJECT}:{OPERATOR_KEY}": lambda: _ed25519("encrypted-operator-key")["privateKeyOpenssh"],
}


def run_program(
    stack_ref: str | Path,
    build: Callable[[Stack], Mapping[str, Any]] | None = None,
    *,
    config: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    preview: bool = False,
    generation: str = "",
) -> ProgramRun:
    """Run the program (default `components.program.build`) for a stack name or file;
    `config` adds or overrides keys of the stack file (`"hybrid-cloud:homeHostKey": ...`),
    `secrets` keys set as with `pulumi config set --secret`; `generation` seeds what the
    stack generates (keys, passwords): another one is another stack generation.

    A stack that fails validation raises `topology.TopologyError` before any resource is
    registered, exactly as under `pulumi up`.
    """
    from . import program

    path = stack_file(str(stack_ref))
    name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    mocks_ = HybridMocks(generation)
    monitor = RecordingMonitor(mocks_)
    sdk_private.start(mocks_, monitor, project=PROJECT, stack=name, preview=preview)
    file_config = read_stack_file(path)
    # Values `pulumi config set --secret` wrote (encrypted): secrets the mocks cannot decrypt.
    encrypted = {
        k: MOCK_TYPED_SECRETS[k]() if k in MOCK_TYPED_SECRETS else MOCK_SECRET
        for k, v in file_config.items()
        if isinstance(v, dict) and set(v) == {"secure"}
    }
    values = {**file_config, **(config or {}), **encrypted, **(secrets or {})}
    pulumi.runtime.set_all_config(_config_for_pulumi(values), [*encrypted, *(secrets or {})])
    stack = program.stack_from_config(str(path))
    exports: dict[str, Export] = {}

    async def body() -> None:
        outs = (build or program.build)(stack)
        for key, value in outs.items():
            out = pulumi.Output.from_input(value)
            exports[key] = Export(await out.future(), await out.is_secret())

    # The evaluation makes ~35k short-lived objects (outputs, futures, tasks) next to the ~350k
    # long-lived ones of the SDK's modules, which it also imports; each of CPython's full
    # collections traverses all of them: six took 0.95 s of a 4.3 s `hybrid plan` of dev.
    # Paused while the program runs (peak RSS +3 MB), the collector resumes afterwards.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        sdk_private.run(body)
    finally:
        if was_enabled:
            gc.enable()
    return ProgramRun(name, stack, tuple(monitor.records), exports, tuple(mocks_.calls))
