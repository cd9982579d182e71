"""A stand-in for a SoftEther cascade in the failover test bed: Ethernet frames between a TAP
device and a TCP connection. Standard library only.

`hub`: listens on TCP; each connection gets a TAP `cN` enslaved to a Linux bridge (hub
HYBRID's stand-in), removed when the connection ends. `bridge`: creates the TAP `tap_bridge`
(like vpnbridge's local bridge: it exists while the process lives and vanishes when it is
killed), applies the OS side (its address and routes, as the bridge's unit does after
SoftEther), connects to the hub and reconnects every second after a loss.

What it shares with SoftEther for the faults: frozen (SIGSTOP) it carries nothing; killed,
its tap disappears; its TCP blackholed, the connection stays established and carries nothing.

    python -m lab.frame_relay hub ADDRESS PORT SWITCH
    python -m lab.frame_relay bridge ADDRESS PORT TAP [IP-ARGS ...]   # IP-ARGS: "addr replace ..." lines
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=False, capture_output=True, timeout=10)


def relay(tap: int, sock: socket.socket) -> None:
    """Frames both ways until the connection ends (2-byte length before each frame)."""
    buf = b""
    while True:
        ready = select.select([tap, sock], [], [], 5.0)[0]
        if tap in ready:
            frame = os.read(tap, 65536)
            sock.sendall(struct.pack("!H", len(frame)) + frame)
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                os.write(tap, buf[2 : 2 + n])
                buf = buf[2 + n :]


def hub(address: str, port: int, switch: str) -> None:
    srv = socket.create_server((address, port))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished connections reap themselves
    count = 0
    while True:
        conn, _ = srv.accept()
        count += 1
        if os.fork() == 0:
            srv.close()
            name = f"c{count}"
            tap = open_tap(name)
            ip("link", "set", name, "master", switch)
            ip("link", "set", name, "up")
            with contextlib.suppress(OSError):
                relay(tap, conn)
            os._exit(0)
        conn.close()


def bridge(address: str, port: int, name: str, os_side: list[str]) -> None:
    tap = open_tap(name)
    ip("link", "set", name, "up")
    for line in os_side:
        ip(*line.split())
    while True:
        try:
            with socket.create_connection((address, port), timeout=2.0) as sock:
                sock.settimeout(None)
                relay(tap, sock)
        except OSError:
            pass
        time.sleep(1.0)


def main(argv: list[str]) -> None:
    if argv[0] == "hub":
        hub(argv[1], int(argv[2]), argv[3])
    else:
        bridge(argv[1], int(argv[2]), argv[3], argv[4:])


if __name__ == "__main__":
    main(sys.argv[1:])
