"""A real browser in the lab: Debian's Chromium, headless, loading a page from inside one of
the lab's network namespaces (`hybrid lab test` uses the home LAN host's, so the page and its
assets cross the tunnels).

Nothing of it touches the root namespace's network, and it sends nothing but the page's own
requests: background networking, component and extension updates, sync, metrics upload and
domain reliability reports are off, and its resolver answers no name (the page is loaded by
address; a name on it, e.g. WordPress's emoji CDN, fails at once). Its profile, home, cache
and temporary files live under `directory`, made anew for each load (no cache from an earlier
load can answer).

Debian's launcher (/usr/bin/chromium) is not used: it adds flags from /etc/chromium.d
(remote extensions, Google API keys) and decides on /dev/shm with a test that breaks where
/dev/shm has two mounts; the binary is run directly with `--disable-dev-shm-usage` (shared
memory in TMPDIR under `directory`: a container's /dev/shm is often 64 MB, too small for a
renderer) and `--no-sandbox` (the lab runs as root, which Chromium's sandbox refuses).
Fonts: Debian's fonts-liberation (packages.apt), the fonts Chromium's package recommends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

from .proc import in_ns, kill_session
from .state import mark

CHROMIUM = "/usr/lib/chromium/chromium"
# The page may take this long to load (`--timeout`: Chromium then stops it and dumps what it
# has); the process is killed a little later.
LOAD_TIMEOUT_S = 20.0
KILL_AFTER_S = LOAD_TIMEOUT_S + 25.0
WINDOW = "1280,900"
SCREENSHOT = "page.png"
DOM = "page.html"


@dataclass(frozen=True)
class Rendered:
    """What the browser made of `url`: the DOM after load ("" if none), the screenshot."""

    url: str
    dom: str
    screenshot: Path | None
    seconds: float
    error: str = ""  # why there is no page: Chromium's own words (its last ERROR line)

    @property
    def title(self) -> str:
        m = re.search(r"<title[^>]*>(.*?)</title>", self.dom, re.S | re.I)
        return " ".join(unescape(m[1]).split()) if m else ""


def flags(url: str, directory: Path) -> list[str]:
    host = urlsplit(url).hostname or ""
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--disable-domain-reliability",
        "--disable-breakpad",
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
        f"--user-data-dir={directory / 'profile'}",
        f"--timeout={int(LOAD_TIMEOUT_S * 1000)}",
        f"--window-size={WINDOW}",
        f"--screenshot={directory / SCREENSHOT}",
        "--dump-dom",
        url,
    ]


def render(ns: str, url: str, lab_directory: Path) -> Rendered:
    """Load `url` in headless Chromium inside network namespace `ns`; its files, the DOM
    (page.html) and the screenshot (page.png) in `lab_directory`/browser. Bounded: the load
    by LOAD_TIMEOUT_S, the process by KILL_AFTER_S; nothing of it outlives the call."""
    directory = lab_directory / "browser"
    for sub in ("profile", "home", "tmp"):
        shutil.rmtree(directory / sub, ignore_errors=True)
        (directory / sub).mkdir(parents=True)
    shot = directory / SCREENSHOT
    shot.unlink(missing_ok=True)
    home = directory / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(directory / "tmp"),
        **mark(lab_directory),
    }
    t0 = time.monotonic()
    p = subprocess.Popen(
        in_ns(ns, CHROMIUM, *flags(url, directory)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=KILL_AFTER_S)
        why = _why(err, p.returncode)
    except subprocess.TimeoutExpired:
        out, why = "", f"chromium did not finish within {KILL_AFTER_S:.0f} s"
    finally:
        # Its zygote, renderer and utility processes share its session.
        kill_session(ns, p.pid)
        p.wait(5)
    seconds = time.monotonic() - t0
    (directory / DOM).write_text(out)
    return Rendered(url, out, shot if shot.exists() else None, seconds, "" if _body(out) else why)


def _body(dom: str) -> bool:
    """The DOM has something in its body (a timed-out load dumps an empty document)."""
    m = re.search(r"<body[^>]*>(.*?)</body>", dom, re.S | re.I)
    return bool(m and m[1].strip())


def _why(stderr: str, code: int) -> str:
    """Chromium's last ERROR line ("Page load timed out.", "Page load failed:
    net::ERR_CONNECTION_REFUSED"), or its exit code."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "dbus" not in ln]
    errors = [ln.split("] ", 1)[1] for ln in lines if ":ERROR:" in ln and "] " in ln]
    if errors:
        return errors[-1]
    return f"chromium exited {code}" + (f": {lines[-1].strip()}" if lines else "")
