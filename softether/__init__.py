"""Declarative, idempotent SoftEther configuration: desired state -> facts -> plan -> vpncmd.

No Pulumi here (only `softether.dynamic` imports it). Entry points:
`softether.session.Session(transport, spec).converge()`,
`softether.derive.derive(topology, plan_routes(topology), secrets)`,
`softether.transport.ssh_transport(target)` / `LocalTransport`.

The package itself imports nothing: the Pulumi program needs `derive` and `spec` but not the
SSH stack (paramiko, the session), which only the provider's operations and the CLI load.
"""
