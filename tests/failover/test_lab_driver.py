"""The lab driver: the site router namespace's routes, through iproute2."""

from __future__ import annotations

import json
from collections.abc import Sequence

from softether.failover.config import LabDriverConfig, parse
from softether.failover.drivers import LabDriver

from .helpers import sample


def test_lab_driver_replaces_each_prefix_and_reads_the_holder():
    cfg = parse(sample(driver={"kind": "lab", "netns": "hc-x-rtr1", "prefixes": ["192.168.1.0/24", "192.168.30.0/24"], "via": "192.168.20.13"}))
    assert isinstance(cfg.driver, LabDriverConfig)
    table = {"192.168.1.0/24": "192.168.20.12", "192.168.30.0/24": "192.168.20.12"}
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> str:
        calls.append(list(argv))
        if argv[3:5] == ["route", "replace"]:
            table[argv[5]] = argv[7]
            return ""
        return json.dumps([{"dst": d, "gateway": g, "dev": "eth1"} for d, g in table.items()] + [{"dst": "192.168.20.0/24", "dev": "eth1"}])

    drv = LabDriver(cfg.driver, run)
    assert drv.holder() == "192.168.20.12"
    drv.claim()
    assert calls[1:3] == [
        ["ip", "-n", "hc-x-rtr1", "route", "replace", "192.168.1.0/24", "via", "192.168.20.13"],
        ["ip", "-n", "hc-x-rtr1", "route", "replace", "192.168.30.0/24", "via", "192.168.20.13"],
    ]
    assert drv.holder() == "192.168.20.13"
    del table["192.168.30.0/24"]
    assert drv.holder() is None
