"""A valid configuration of the interface (docs/failover.md) to vary."""

from __future__ import annotations

import copy
from typing import Any

SAMPLE: dict[str, Any] = {
    "site": "Hybrid-VPC",
    "me": "a",
    "peer": "b",
    "tap": "tap_bridge",
    "own_address": "192.168.10.12/24",
    "peer_address": "192.168.10.13",
    "vip": "192.168.10.2/24",
    "vip_mac": "02:48:43:00:00:02",
    "probes": ["192.168.1.249", "192.168.30.100"],
    "interval_s": 1.0,
    "fail_after": 3,
    "recover_after": 10,
    "preferred": "a",
    "driver": {
        "kind": "aws",
        "region": "ap-northeast-1",
        "route_table_ids": ["rtb-0123456789abcdef0"],
        "prefixes": ["192.168.1.0/24", "192.168.30.0/24"],
        "network_interface_id": "eni-0123456789abcdef0",
        "endpoint": None,
    },
}


def sample(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE)
    data.update(changes)
    return data
