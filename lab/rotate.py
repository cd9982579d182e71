"""A rotation in a running lab, carried out as `pulumi up` does after a bump of
`hybrid-cloud:rotation`: the kind's secrets generated anew, the home server converged first
(its users, hub passwords, certificate), then every bridge with its previous spec (a cascade's
new password and a controlled reconnect with a check; its admin password), through the same
`softether.session.Session` the provider runs. The lab's `up` pins no server certificate; a
rotation pins the home server's in every cascade, as the program does (`kind` None: only
that). The counters and the pin are kept in the lab's record (`extra.rotation`).

The lab's secrets record holds the new passwords from the start of a rotation: one that stops
half-way is finished by running it again only where the nodes still accept the old ones
(`hybrid lab down` and `up` start again from scratch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from softether.derive import secret_kind, secret_names
from softether.session import Session

from .lab import Lab, specs, transport

KINDS = ("cascade", "admin", "hub", "certificate")


@dataclass(frozen=True)
class Rotated:
    """What one rotation did: `lines` by site (`Result.rotated`: each credential and its steps)."""

    kind: str | None
    lines: dict[str, tuple[str, ...]]
    seconds: float


def rotate(lab: Lab, kind: str | None) -> Rotated:
    """Rotate `kind` (one of `KINDS`) on every node; None: pin the server's certificate only."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    t0 = time.monotonic()
    net = lab.stack.network
    home = net.home.name
    record: dict[str, Any] = dict(lab.state.extra.get("rotation", {}))
    counters: dict[str, int] = dict(record.get("counters", {}))
    n_cert = counters.get("certificate", 0)
    current = specs(lab, certificate_rotation=n_cert)
    cert = Session(transport(lab, lab.nodes[home]), current.server).server_certificate()
    before = specs(lab, server_cert=cert if record.get("pinned") else None, certificate_rotation=n_cert)
    if kind is not None:
        counters[kind] = counters.get(kind, 0) + 1
        if kind != "certificate":
            lab.state.renew(tuple(n for n in secret_names(net) if secret_kind(net, n) == kind))
    n_cert = counters.get("certificate", 0)
    server = specs(lab, server_cert=cert, certificate_rotation=n_cert).server
    session = Session(transport(lab, lab.nodes[home]), server, previous=before.server)
    lines = {home: session.converge().rotated}
    after = specs(lab, server_cert=session.server_certificate(), certificate_rotation=n_cert)
    for site, spec in after.bridges.items():
        bridge = Session(transport(lab, lab.nodes[site]), spec, previous=before.bridges[site])
        lines[site] = bridge.converge().rotated
    lab.state.extra["rotation"] = {"counters": counters, "pinned": True}
    lab.state.save()
    return Rotated(kind, lines, time.monotonic() - t0)
