"""`hybrid lab test`: the blog's acceptance checks against a running lab, as PASS/FAIL lines.

Part 1: every node matches the topology (a read-only converge plan is empty), each bridge's
cascade is established, every site's hosts reach the other sites' hosts the paths allow, and
the root namespace holds none of the lab's addresses; the filters hold both ways
(`firewall:`, lab/firewall.py); SoftEther refuses administration from anywhere but the node
itself, with the right admin password too (`softether:`): the home server from the internet,
each bridge from a home host (the internet does not reach its port at all). Part 2: WordPress
answers through the tunnels; its installer refuses a visitor from the home LAN (it was
installed at `lab up`: never claimable); headless Chromium on the home LAN host renders the
site over the tunnels (`browser:`, lab/browser.py; the screenshot stays in the lab
directory's browser/); stop the database and the page shows WordPress's database-connection
error; start it and the page works again.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from softether.derive import admin_secret, secret_names
from softether.spec import BRIDGE_HUB, BridgeSpec, ServerSpec

from . import browser, firewall, paas, proc
from .lab import Lab, open_lab, refresh_pids, session, specs
from .layout import INTERNET, OPERATOR, Host
from .state import lab_dir, operation
from .status import Probe, matrix

PAGE_DEADLINE_S = 30.0
DEAD_PATH_S = 3.0  # the app's TCP connect to the database, before the page checks
# SoftEther's ERR_IP_ADDRESS_DENIED (src/Cedar/Cedar.h): adminip.txt refused the source.
IP_ADDRESS_DENIED = 109
ADMIN_TIMEOUT_S = 15


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}" + (
            f": {self.detail}" if self.detail else ""
        )


def _running(lab: Lab) -> Check:
    missing = [n.name for n in lab.layout.namespaces if not proc.exists(n.name)]
    dead = [k for k in lab.state.pids if lab.state.live(k) is None]
    ok = not missing and not dead and bool(lab.state.pids)
    why = ", ".join(
        [*(f"namespace {m} missing" for m in missing), *(f"{d} not running" for d in dead)]
    )
    n = len(lab.layout.namespaces)
    return Check(
        "namespaces and processes of the lab",
        ok,
        why or f"{n} namespaces, {len(lab.state.pids)} processes",
    )


def _root_untouched(lab: Lab) -> Check:
    """No address or route of the root namespace falls in the stack's ranges or the lab's
    internet: the lab lives entirely inside its namespaces."""
    net = lab.stack.network
    ranges = [*net.ranges.values(), INTERNET]
    text = proc.run(["ip", "-4", "-o", "addr", "show"]) + proc.run(["ip", "-4", "route", "show"])
    found = set()
    for word in text.split():
        try:
            n = ipaddress.IPv4Network(word, strict=False)
        except ValueError:
            continue
        if n.prefixlen > 0 and any(n.overlaps(r) for r in ranges):
            found.add(word)
    return Check(
        "root namespace holds no lab address or route", not found, ", ".join(sorted(found))
    )


def _nodes(lab: Lab) -> list[Check]:
    nodes = specs(lab)
    home = lab.stack.network.home.name
    todo = [(home, nodes.server), *nodes.bridges.items()]

    def one(
        item: tuple[str, ServerSpec | BridgeSpec],
    ) -> tuple[str, list[str], list[tuple[str, str, bool]]]:
        """Read-only: the node's remaining plan and its cascades (name, status, established)."""
        site, spec = item
        s = session(lab, site, spec)
        try:
            state = s.get_state()
            lines = s.compare(state).lines()
        finally:
            s.transport.close()
        hub = state[0].hub(BRIDGE_HUB) if site != home else None
        return (
            site,
            lines,
            [(c.name, c.status, c.established) for c in (hub.cascades if hub else ())],
        )

    out: list[Check] = []
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        for site, lines, cascades in pool.map(one, todo):
            out.append(
                Check(
                    f"{site}: SoftEther configuration matches the topology",
                    not lines,
                    "; ".join(lines),
                )
            )
            if site != home:
                ok = bool(cascades) and all(e for _, _, e in cascades)
                out.append(
                    Check(
                        f"{site}: cascade established",
                        ok,
                        ", ".join(f"{n} {s}" for n, s, _ in cascades),
                    )
                )
    return out


def _matrix(lab: Lab, probes: list[Probe]) -> list[Check]:
    out = []
    for a in lab.layout.sites:
        for b in lab.layout.sites:
            if a == b:
                continue
            ps = [p for p in probes if p.src.site == a and p.dst.site == b]
            if not ps:
                continue  # no path from a to b: the `firewall:` checks prove it refused
            bad = [f"{p.src.address} -> {p.dst.address}" for p in ps if not p.ok]
            out.append(
                Check(
                    f"ping {a} -> {b} ({len(ps)} host pairs)",
                    not bad,
                    "no answer: " + ", ".join(bad) if bad else "",
                )
            )
    return out


def _firewall(lab: Lab) -> list[Check]:
    ports = {site: n.admin_port for site, n in lab.nodes.items()}
    return [
        Check(e.name, ok, detail) for e, ok, detail in firewall.verify(lab.stack, lab.layout, ports)
    ]


def admin_login(ns: str, host: str, port: int, password: str) -> tuple[int, str]:
    """vpncmd (Debian's client) from namespace `ns` to `host`:`port` in server admin mode with
    `password` (on stdin, never argv): (its exit code, SoftEther's error code; the last line)."""
    argv = proc.in_ns(ns, "vpncmd", f"{host}:{port}", "/SERVER", "/CMD", "ServerInfoGet")
    try:
        p = subprocess.run(
            argv,
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=ADMIN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, f"no answer within {ADMIN_TIMEOUT_S} s (vpncmd prompts: password refused)"
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    m = re.search(r"Error code: (\d+)\)\n(.*)", p.stdout)
    return p.returncode, f"error {m[1]}: {m[2].strip()}" if m else (lines[-1] if lines else "")


def _admin(lab: Lab) -> list[Check]:
    """Administration refused from elsewhere, even with the right password (adminip.txt)."""
    net, layout = lab.stack.network, lab.layout
    secrets = lab.state.secrets(secret_names(net), create=False)
    home = layout.node(net.home.name)
    lan = _home_host(lab)
    tries = [(net.home.name, layout.operator_ns, OPERATOR.ip, home.public.ip, net.home.vpn_server.port, "the internet")]
    tries += [
        (vm.node, lan.ns, lan.address, vm.private_address, lab.nodes[vm.node].admin_port, "a home host")
        for vm in net.bridge_vms
    ]

    def one(t: tuple[str, str, object, object, int, str]) -> Check:
        site, ns, src, host, port, where = t
        rc, why = admin_login(ns, str(host), port, secrets[admin_secret(site)])
        return Check(
            f"softether: {site} refuses administration from {where} ({src} -> {host}:{port},"
            " with the admin password)",
            rc == IP_ADDRESS_DENIED,
            why,
        )

    with ThreadPoolExecutor(max_workers=len(tries)) as pool:
        return list(pool.map(one, tries))


def _home_host(lab: Lab) -> Host:
    """The home LAN's host: where a visitor of the site sits."""
    return next(h for h in lab.layout.hosts if h.site == lab.stack.network.home.name)


def _installer(lab: Lab, app: paas.WordPress) -> Check:
    """A visitor from the home LAN asks for WordPress's installer: it must say WordPress is
    installed and offer no form (else the first visitor would make themselves its admin)."""
    lan = _home_host(lab)
    url = app.url + "wp-admin/install.php"
    name = f"WordPress never claimable: {url} from the home LAN {lan.address} refuses to install"
    try:
        page = paas.fetch(lan.ns, url)
    except OSError as e:
        return Check(name, False, f"no answer ({e or type(e).__name__})")
    if paas.installer_refused(page):
        return Check(name, True, f"HTTP {page.status} '{paas.INSTALLED}'")
    if paas.INSTALL_FORM in page.body:
        why = "it serves the install form: the first visitor would become the admin"
    else:
        why = "no 'Already Installed' page"
    return Check(name, False, f"HTTP {page.status}: {why}")


def _browser(lab: Lab, app: paas.WordPress) -> Check:
    """Headless Chromium on the home LAN host loads the site over the tunnels: the site's
    title, no database error."""
    lan = _home_host(lab)
    r = browser.render(lan.ns, app.url, lab.state.directory)
    name = f"browser: {app.url} from the home LAN {lan.address} (headless Chromium)"
    shot = f", screenshot {r.screenshot}" if r.screenshot else ", no screenshot"
    took = f"in {r.seconds:.1f} s{shot}"
    if r.error:
        return Check(name, False, f"no page (Chromium: {r.error}) {took}")
    if paas.DB_ERROR in r.dom:
        return Check(name, False, f"rendered '{paas.DB_ERROR}' {took}")
    ok = r.title == paas.SITE_TITLE
    want = "" if ok else f' (want "{paas.SITE_TITLE}")'
    return Check(name, ok, f'rendered "{r.title}"{want} {took}')


def _wait_page(app: paas.WordPress, want: Callable[[paas.Page], bool]) -> tuple[bool, str, float]:
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < PAGE_DEADLINE_S:
        try:
            page = app.front_page()
            if want(page):
                return True, f"HTTP {page.status}", time.monotonic() - t0
            last = f"HTTP {page.status} {page.location}".strip()
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    return False, last, time.monotonic() - t0


def _dead_path(app: Host, db: Host, port: int) -> str | None:
    """Why the app cannot reach the database: its TCP connect to the database's port (the one
    path the page needs; the paths let no ping between the two sites) gets no answer."""
    outcome = firewall.connect(firewall.Probe(app.ns, app.address, db.address, port), DEAD_PATH_S)
    if outcome in ("open", "reset"):
        return None
    return f"the app {app.address} gets {outcome} from the database {db.address}:{port} (TCP)"


def _paas(lab: Lab) -> list[Check]:
    """The page checks wait up to PAGE_DEADLINE_S each: on a dead path to the database, or
    once the page does not answer, the rest is not tried (it took 77-139 s on a red network)."""
    if lab.layout.db is None or lab.layout.app is None:
        return [Check("PaaS over the tunnels", True, "the stack has no database/app: skipped")]
    db = paas.Database(lab.stack, lab.layout, lab.state)
    app = paas.WordPress(lab.stack, lab.layout, lab.state)
    where = f"{app.url} (in {lab.layout.app.site}) -> DB {app.db_host} (in {lab.layout.db.site})"
    name = f"WordPress answers over the tunnels: {where}"
    dead = _dead_path(lab.layout.app, lab.layout.db, db.cfg.port)
    seen = _browser(lab, app)  # what a visitor sees, whatever is wrong
    if dead:
        return [
            Check(name, False, f"not tried: {dead}; the installer and database checks neither"),
            seen,
        ]
    ok, why, s = _wait_page(app, paas.page_ok)
    out = [Check(name, ok, f"{why}, {s:.1f} s"), _installer(lab, app), seen]
    if not ok:
        out[0] = Check(name, ok, f"{why}, {s:.1f} s; the database checks not tried")
        return out
    db.stop()
    ok, why, s = _wait_page(app, paas.page_db_error)
    out.append(
        Check(
            "database stopped -> WordPress shows 'Error establishing a database connection'",
            ok,
            f"{why}, {s:.1f} s",
        )
    )
    db.start()
    ok, why, s = _wait_page(app, paas.page_ok)
    out.append(Check("database started -> WordPress works again", ok, f"{why}, {s:.1f} s"))
    return out


def checks(ref: str, root: Path | None = None) -> list[Check]:
    with operation(lab_dir(ref, root), "lab test", create=False):
        return _checks(ref, root)


def _checks(ref: str, root: Path | None) -> list[Check]:
    lab = open_lab(ref, root)
    if not lab.state.path.exists():
        return [Check("a lab is running", False, f"no lab for stack {ref}: run hybrid lab up")]
    refresh_pids(lab)
    first = _running(lab)
    if not first.ok:
        return [first]
    return [
        first,
        _root_untouched(lab),
        *_nodes(lab),
        *_matrix(lab, matrix(lab.layout)),
        *_firewall(lab),
        *_admin(lab),
        *_paas(lab),
    ]


def run_checks(ref: str, say: Callable[[str], None] = print, root: Path | None = None) -> int:
    t0 = time.monotonic()
    results = checks(ref, root)
    for c in results:
        say(c.line())
    failed = sum(not c.ok for c in results)
    say(f"{len(results) - failed} passed, {failed} failed ({time.monotonic() - t0:.1f} s)")
    return 1 if failed else 0
