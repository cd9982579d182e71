"""Declarative, idempotent SoftEther configuration: desired state -> facts -> plan -> vpncmd.

No Pulumi here (only `softether.dynamic` imports it). Entry points:
`Session(transport, spec).converge()`, `derive(topology, plan_routes(topology), secrets)`,
`SshTransport` / `LocalTransport`.
"""

from .derive import NodeSpecs, derive, secret_names
from .errors import (
    AccessDeniedError,
    AuthFailed,
    BridgeDeviceError,
    CommandError,
    HostCommandError,
    HostKeyRefused,
    HostUnreachable,
    NotConvergedError,
    SoftEtherError,
    TrafficError,
    TransportError,
    VpncmdTimeoutError,
)
from .session import Plan, Result, Session
from .spec import BridgeSpec, ServerSpec, SshTarget, spec_from_json
from .transport import LocalTransport, SshTransport, ssh_transport

__all__ = [
    "AccessDeniedError",
    "AuthFailed",
    "BridgeDeviceError",
    "BridgeSpec",
    "CommandError",
    "HostCommandError",
    "HostKeyRefused",
    "HostUnreachable",
    "LocalTransport",
    "NodeSpecs",
    "NotConvergedError",
    "Plan",
    "Result",
    "ServerSpec",
    "Session",
    "SoftEtherError",
    "SshTarget",
    "SshTransport",
    "TrafficError",
    "TransportError",
    "VpncmdTimeoutError",
    "derive",
    "secret_names",
    "spec_from_json",
    "ssh_transport",
]
