"""`HybridSecrets`: every generated credential of a stack, all Pulumi secrets.

Passwords: one per name of `softether.derive.secret_names` (pulumi-random); SSH: the
operator's key and one host key per cloud bridge (pulumi-tls, ed25519).
"""

from __future__ import annotations

import re

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from softether.derive import secret_names
from topology import Topology

PASSWORD_LENGTH = 32


def password_name(component: str, secret_name: str) -> str:
    """The RandomPassword resource name for a secret name (`admin/home` -> `secrets-admin-home`)."""
    return f"{component}-{re.sub(r'[^A-Za-z0-9-]+', '-', secret_name)}"


class HybridSecrets(pulumi.ComponentResource):
    """`passwords[name]` for each SoftEther secret name, `operator_key`, `host_keys[site]`."""

    passwords: dict[str, random.RandomPassword]
    operator_key: tls.PrivateKey
    host_keys: dict[str, tls.PrivateKey]

    def __init__(self, name: str, net: Topology, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:secrets:HybridSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.passwords = {
            n: random.RandomPassword(
                password_name(name, n),
                length=PASSWORD_LENGTH,
                # vpncmd takes passwords as /PASSWORD:value arguments inside its script:
                # letters and digits need no quoting rules.
                special=False,
                opts=child,
            )
            for n in secret_names(net)
        }
        self.operator_key = tls.PrivateKey(f"{name}-operator-ssh", algorithm="ED25519", opts=child)
        self.host_keys = {
            s.name: tls.PrivateKey(f"{name}-{s.name}-host-key", algorithm="ED25519", opts=child)
            for s in net.sites
        }
        self.register_outputs({})

    def values(self) -> pulumi.Output[dict[str, str]]:
        """Every password by secret name, as one secret output (for `softether.derive`)."""
        return pulumi.Output.secret(pulumi.Output.all(**{n: p.result for n, p in self.passwords.items()}))
