"""Which TLS group a SoftEther handshake negotiated, read off the wire in a lab namespace.

A TLS 1.3 ServerHello travels in the clear; its key_share extension names the group the
server picked from the client's offer. `capture_server_hellos` listens on one interface of
one namespace (a raw packet socket opened by a thread that entered that namespace; the
caller's thread is untouched), bounded in time, and returns every ServerHello it saw.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .node import CLONE_NEWNET

ETH_P_ALL = 0x0003
KEY_SHARE, SUPPORTED_VERSIONS = 0x0033, 0x002B
# IANA TLS Supported Groups, and the codes oqs-provider uses for the Kyber hybrids
# (oqsprov/oqsprov_capabilities.c of the submodule SoftEther 5.2.5188 pins).
GROUPS = {
    0x0017: "P-256",
    0x0019: "P-521",
    0x001D: "X25519",
    0x11EC: "X25519MLKEM768",
    0x6399: "x25519_kyber768",
    0x2F3D: "p521_kyber1024",
}


@dataclass(frozen=True)
class ServerHello:
    source: str  # "198.51.100.1:443"
    tls13: bool
    group: int | None  # key_share group; None if the segment ended before it

    @property
    def group_name(self) -> str:
        return "none" if self.group is None else GROUPS.get(self.group, f"0x{self.group:04x}")


def parse_server_hello(payload: bytes) -> tuple[bool, int | None] | None:
    """(TLS 1.3?, key_share group) if `payload` starts with a ServerHello record, else None."""
    if len(payload) < 9 or payload[0] != 0x16 or payload[5] != 0x02:
        return None
    body = payload[9 + 2 + 32 :]  # record and handshake headers, legacy_version, random
    if not body:
        return None
    rest = body[1 + body[0] :]  # legacy_session_id
    if len(rest) < 5:
        return None
    ext_len = struct.unpack("!H", rest[3:5])[0]  # after cipher_suite (2), compression (1)
    ext, tls13, group = rest[5 : 5 + ext_len], False, None
    while len(ext) >= 4:
        kind, length = struct.unpack("!HH", ext[:4])
        data = ext[4 : 4 + length]
        if kind == SUPPORTED_VERSIONS and data[:2] == b"\x03\x04":
            tls13 = True
        if kind == KEY_SHARE and len(data) >= 2:
            group = struct.unpack("!H", data[:2])[0]
        ext = ext[4 + length :]
    return tls13, group


def capture_server_hellos(
    netns: str, interface: str, action: Callable[[], None], seconds: float
) -> list[ServerHello]:
    """Listen on `interface` in `netns` while `action` runs and up to `seconds` in all."""
    found: list[ServerHello] = []
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def listen() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
                s.bind((interface, 0))
                ready.set()
                deadline = time.monotonic() + seconds
                while not done.is_set() and time.monotonic() < deadline:
                    if select.select([s], [], [], 0.2)[0]:
                        _record(s.recv(65535), found)
        except BaseException as e:
            errors.append(e)
            ready.set()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    ready.wait(10)
    try:
        if not errors:
            action()
    finally:
        done.set()
        t.join(seconds + 5)
    if errors:
        raise errors[0]
    return found


def _record(frame: bytes, found: list[ServerHello]) -> None:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:  # IPv4, TCP
        return
    ihl = (frame[14] & 0x0F) * 4
    tcp = frame[14 + ihl :]
    if len(tcp) < 20:
        return
    payload = tcp[(tcp[12] >> 4) * 4 :]
    got = parse_server_hello(payload)
    if got is not None:
        src = f"{socket.inet_ntoa(frame[26:30])}:{struct.unpack('!H', tcp[:2])[0]}"
        found.append(ServerHello(src, got[0], got[1]))
