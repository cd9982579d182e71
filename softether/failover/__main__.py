"""`python3 -m softether.failover CONFIG`: the controller's main loop (systemd unit
`hybrid-failover.service`). A bad configuration exits 2 with one line before anything is
touched; SIGTERM/SIGINT end the loop within a round and release only what this bridge holds."""

from __future__ import annotations

import signal
import sys
import threading

from .config import ConfigError, load
from .controller import Controller, IcmpProber, MacvlanVip, UdpLink, run_forever
from .drivers import make


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m softether.failover CONFIG.json", file=sys.stderr)
        return 2
    try:
        cfg = load(args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ctl = Controller(
        cfg,
        prober=IcmpProber(cfg.own_address.ip, cfg.tap),
        link=UdpLink(cfg.own_address.ip, cfg.peer_address, cfg.heartbeat_port),
        vip=MacvlanVip(cfg.tap, cfg.vip.ip, cfg.vip_mac),
        driver=make(cfg.driver),
        log=lambda line: print(f"{cfg.site}/{cfg.me}: {line}", flush=True),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(ctl, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
