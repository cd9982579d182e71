"""The site as a visitor from the home LAN sees it (issue 21 items 2 and 3), on one dev lab,
in file order: headless Chromium renders it over the tunnels and the installer refuses to
install; an uninstalled WordPress (an empty database) fails both, `lab up` installs it again;
a failed install leaves no web server; the browser check fails with a clear line when the app
is down or the app's path to the database is dead. Figures are printed (pytest -s)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from lab import browser, checks, faults, paas
from lab.lab import open_lab, specs
from lab.proc import LabError, pids_in
from lab.state import LabState
from lab.status import wait_for_matrix
from lab.up import up
from softether.spec import BRIDGE_HUB

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

RECOVERY_S = 60.0
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningLab]:
    yield from lab_fixture("dev")


def _by_prefix(results: list[checks.Check], prefix: str) -> checks.Check:
    found = [c for c in results if c.name.startswith(prefix)]
    assert len(found) == 1, [c.line() for c in results]
    print(found[0].line())
    return found[0]


def _lan_ns(dev: RunningLab) -> str:
    lab = open_lab(dev.ref, dev.root)
    return next(h.ns for h in lab.layout.hosts if h.site == lab.stack.network.home.name)


def test_lab_browser_renders_the_site_from_the_home_lan(dev: RunningLab) -> None:
    results = checks.checks(dev.ref, dev.root)
    assert [c.line() for c in results if not c.ok] == []
    seen = _by_prefix(results, "browser: ")
    shot = dev.directory / "browser" / browser.SCREENSHOT
    assert f'rendered "{paas.SITE_TITLE}"' in seen.detail and f"screenshot {shot}" in seen.detail
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10_000
    assert f"<title>{paas.SITE_TITLE}</title>" in (dev.directory / "browser" / browser.DOM).read_text()
    assert "from the home LAN" in _by_prefix(results, "WordPress never claimable").name
    # The admin account is the lab's: its generated secret logs in, another password does not.
    lab = open_lab(dev.ref, dev.root)
    app = paas.WordPress(lab.stack, lab.layout, lab.state)
    secret = lab.state.secrets((paas.WP_SECRET,), create=False)[paas.WP_SECRET]

    def login(password: str) -> paas.Page:
        form = {"log": paas.ADMIN_USER, "pwd": password}
        cookie = {"Cookie": "wordpress_test_cookie=WP%20Cookie%20check"}  # wp-login.php's test
        return paas.fetch(_lan_ns(dev), app.url + "wp-login.php", form, headers=cookie)

    assert login(secret).location == app.url + "wp-admin/"
    assert login(secret + "x").status == 200  # the form again, with its error
    # Chromium's profile is the lab's, and nothing of it is left running.
    assert (dev.directory / "browser" / "profile" / "Default").is_dir()
    assert pids_in(_lan_ns(dev)) == []


def test_lab_uninstalled_wordpress_fails_the_check_and_up_installs_it(dev: RunningLab) -> None:
    """An empty database: WordPress offers its installer to whoever comes first. The check
    must say so; `lab up` installs it again (before anyone can)."""
    lab = open_lab(dev.ref, dev.root)
    faults.empty_database(lab)
    results = checks.checks(dev.ref, dev.root)
    claim = _by_prefix(results, "WordPress never claimable")
    assert not claim.ok and "install form: the first visitor would become the admin" in claim.detail
    seen = _by_prefix(results, "browser: ")
    assert not seen.ok and f'(want "{paas.SITE_TITLE}")' in seen.detail
    assert not _by_prefix(results, "WordPress answers").ok  # a redirect to the installer
    r = up(dev.ref, say=print, root=dev.root)
    assert r.matrix_ok
    assert [c.line() for c in checks.checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_up_starts_no_web_server_when_the_install_fails(dev: RunningLab) -> None:
    """The web server down and the database empty and not answering: `lab up` cannot install
    WordPress, so it does not start the web server (no installer is ever served)."""
    lab = open_lab(dev.ref, dev.root)
    app = paas.WordPress(lab.stack, lab.layout, lab.state)
    app.stop()
    faults.empty_database(lab)
    db = lab.state.pids["db"]
    os.kill(db, signal.SIGSTOP)  # TCP still connects; the install gets no answer
    try:
        with pytest.raises(
            LabError,
            match=r"WordPress is not installed, its web server not started .*"
            "Error establishing a database connection",
        ):
            up(dev.ref, say=print, root=dev.root)
        assert LabState.load(dev.directory).live("app") is None  # type: ignore[union-attr]
        with pytest.raises(ConnectionRefusedError):
            paas.fetch(_lan_ns(dev), app.url + "wp-admin/install.php", timeout=5)
    finally:
        os.kill(db, signal.SIGCONT)
    assert up(dev.ref, say=print, root=dev.root).matrix_ok
    assert [c.line() for c in checks.checks(dev.ref, dev.root) if not c.ok] == []


def test_lab_browser_check_fails_when_the_app_is_down(dev: RunningLab) -> None:
    lab = open_lab(dev.ref, dev.root)
    app = paas.WordPress(lab.stack, lab.layout, lab.state)
    app.stop()
    try:
        results = checks.checks(dev.ref, dev.root)
    finally:
        app.start()
    assert not _by_prefix(results, "WordPress answers").ok
    seen = _by_prefix(results, "browser: ")
    assert not seen.ok and "no page (Chromium: Page load failed: net::ERR_CONNECTION_REFUSED)" in seen.detail
    assert checks._browser(lab, app).ok


def test_lab_browser_check_fails_when_the_database_path_is_dead(dev: RunningLab) -> None:
    """The database's site cut off (its cascade offline): home still reaches the app, whose
    page then waits for the database: the browser gets no page, and says so."""
    lab = open_lab(dev.ref, dev.root)
    assert lab.layout.db is not None
    site = lab.layout.db.site
    cascade = specs(lab).bridges[site].cascades[0].name
    faults.vpncmd(lab, site, "CascadeOffline", cascade, hub=BRIDGE_HUB)
    try:
        results = checks.checks(dev.ref, dev.root)
    finally:
        faults.vpncmd(lab, site, "CascadeOnline", cascade, hub=BRIDGE_HUB)
    assert "not tried: the app" in _by_prefix(results, "WordPress answers").detail
    seen = _by_prefix(results, "browser: ")
    assert not seen.ok and "no page (Chromium: Page load timed out.)" in seen.detail
    assert wait_for_matrix(lab.layout, RECOVERY_S)[0]
    assert checks._browser(lab, paas.WordPress(lab.stack, lab.layout, lab.state)).ok
