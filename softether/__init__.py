"""Declarative, idempotent SoftEther configuration: desired state -> facts -> plan -> vpncmd.

No Pulumi here (only `softether.dynamic` imports it). Entry points:
`Session(transport, spec).converge()`, `derive(topology, plan_routes(topology), secrets)`,
`SshTransport` / `LocalTransport`.
"""

from .derive import NodeSpecs, derive, secret_names
from .session import (
    AccessDeniedError,
    BridgeDeviceError,
    CommandError,
    HostCommandError,
    NotConvergedError,
    Plan,
    Result,
    Session,
    SoftEtherError,
    TrafficError,
    VpncmdTimeoutError,
)
from .spec import BridgeSpec, ServerSpec, SshTarget, spec_from_json
from .transport import (
    AuthFailed,
    HostKeyRefused,
    HostUnreachable,
    LocalTransport,
    SshTransport,
    TransportError,
    ssh_transport,
)

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
