"""The PaaS stand-ins of part 2 of the blog, inside the lab.

- RDS -> Debian's MariaDB in the `db` namespace, on the DB site's address (the blog's
  192.168.20.225), its own datadir/socket under the lab directory, database and user from the
  stack (`database.dbName`, `database.username`), password generated for the lab.
- App Service -> Debian's WordPress served by PHP's built-in server in the `app` namespace
  (its connections leave from the app's delegated subnet), listening on the app's private
  endpoint (`Layout.endpoint`) only, configured with DB host = the DB's private address: the
  value the cloud program passes to App Service. Debian's WordPress reads
  /etc/wordpress/config-*.php; a private mount namespace bind-mounts the lab's own directory
  there, so the real /etc is never written.

Never claimable: WordPress is installed before its web server starts (`install`: WordPress's
own `wp_install` run by PHP's CLI in the app's namespace, the admin password the lab's secret
`wordpress/admin`, on stdin), so no visitor ever meets its installer; a failed install leaves
no web server.

Pages are fetched with a bounded HTTP client from inside a namespace (the app's own by
default): WordPress renders its front page only if its queries cross the tunnels to the DB
and back.
"""

from __future__ import annotations

import grp
import http.client
import os
import re
import shlex
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from topology import Stack

from .layout import Host, Layout
from .node import netns_socket
from .proc import LabError, alive, in_ns, kill_session, netns_id, netns_of, run, stop
from .state import LabState, mark

WORDPRESS_ROOT = "/usr/share/wordpress"
WEB_USER = "www-data"
DB_ERROR = "Error establishing a database connection"
SITE_TITLE = "hybrid-cloud lab"
ADMIN_USER = "admin"
# What WordPress's installer (wp-admin/install.php) shows on an installed site, and the form
# it shows on one that is not.
INSTALLED = "Already Installed"
INSTALL_FORM = '<form id="setup"'
INSTALL_MARK = "wordpress: installed"
# WordPress's installer, as wp-admin/install.php step 2 runs it, without the web: the host
# selects Debian's config file, the password comes on stdin (never argv), no mail is sent.
INSTALL_PHP = f"""
function wp_new_blog_notification(...$args) {{}}
$_SERVER['HTTP_HOST'] = getenv('WP_LAB_HOST');
define('WP_INSTALLING', true);
require '{WORDPRESS_ROOT}/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (!is_blog_installed()) {{
    $pw = rtrim((string) fgets(STDIN), "\\n");
    wp_install(getenv('WP_LAB_TITLE'), '{ADMIN_USER}', 'admin@example.com', 0, '', wp_slash($pw));
}}
if (is_blog_installed()) {{ echo "{INSTALL_MARK}\\n"; }}
"""
DB_SECRET = "database/master"
WP_SECRET = "wordpress/admin"
SECRET_NAMES = (DB_SECRET, WP_SECRET)
# The stand-ins start while the VPN nodes converge: lower priority keeps them off the
# critical path (`lab up` time) on a small machine.
NICE = ("nice", "-n", "10")
INSTALL_TIMEOUT_S = 120.0
INSTALL_RETRY_S = 30.0  # how long an unreachable database is waited for, in tries
INSTALL_TRIES = 30
DB_READ_TIMEOUT_S = 20


@dataclass(frozen=True)
class Page:
    status: int
    location: str
    body: str


def fetch(
    ns: str,
    url: str,
    data: dict[str, str] | None = None,
    timeout: float = 20.0,
    headers: dict[str, str] | None = None,
) -> Page:
    """GET (or POST `data`) `url` from inside namespace `ns`; redirects are not followed."""
    u = urllib.parse.urlsplit(url)
    body = urllib.parse.urlencode(data) if data is not None else None
    form = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    headers = {**form, **(headers or {})}
    conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=timeout)
    conn.sock = netns_socket(ns, u.hostname or "", u.port or 80, timeout)
    try:
        conn.request(
            "POST" if body else "GET", u.path + (f"?{u.query}" if u.query else ""), body, headers
        )
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        return Page(resp.status, resp.getheader("Location") or "", text)
    finally:
        conn.close()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with log.open("ab") as out:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return p.pid


class Database:
    """MariaDB standing in for RDS."""

    def __init__(self, stack: Stack, layout: Layout, state: LabState) -> None:
        assert stack.database is not None and layout.db is not None
        self.cfg = stack.database
        self.host: Host = layout.db
        self.state = state
        self.dir = state.directory / "db"
        self.password = state.secrets(SECRET_NAMES)[DB_SECRET]

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "mysqld.sock"

    def _init(self) -> None:
        data = self.dir / "data"
        if (data / "mysql").exists():
            return
        for d in (data, self.dir / "run"):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, *_mysql_ids())
        # In the DB's namespace: if `up` dies meanwhile, `down` finds it there.
        run(
            in_ns(
                self.host.ns,
                *NICE,
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--user=mysql",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ),
            timeout=120,
        )

    def start(self) -> None:
        if _running_in(self.state, "db", self.host.ns):
            return
        self._init()
        self.socket.unlink(missing_ok=True)
        argv = in_ns(
            self.host.ns,
            *NICE,
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.dir / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'run' / 'mysqld.pid'}",
            f"--bind-address={self.host.address}",
            f"--port={self.cfg.port}",
            "--user=mysql",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
        )
        self.state.record(
            {"db": _spawn(argv, self.dir / "mariadbd.log", mark(self.state.directory))}
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if time.monotonic() > deadline or not alive(self.state.pids["db"]):
                raise LabError(f"database: mariadbd did not start; see {self.dir / 'mariadbd.log'}")
            time.sleep(0.1)
        user, name = self.cfg.username, self.cfg.db_name
        sql = (
            f"CREATE DATABASE IF NOT EXISTS `{name}`;"
            f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{self.password}';"
            f"ALTER USER '{user}'@'%' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL ON `{name}`.* TO '{user}'@'%';"
        )
        # SQL on stdin: the password stays out of argv.
        run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot"], stdin=sql)

    def stop(self) -> None:
        stop(self.state.live("db"), seconds=30)
        self.state.record({"db": None})


def _running_in(state: LabState, name: str, ns: str) -> bool:
    """`name` runs in namespace `ns`; one left running in an unnamed namespace (`ns` deleted
    by hand, then made anew) is stopped, to be started again."""
    pid = state.live(name)
    if pid is not None and netns_of(pid) == netns_id(ns):
        return True
    stop(pid)
    return False


def _mysql_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("mysql")
    return pw.pw_uid, pw.pw_gid


class WordPress:
    """WordPress standing in for App Service; DB host = the DB's private address; reached at
    its private endpoint."""

    def __init__(self, stack: Stack, layout: Layout, state: LabState) -> None:
        assert stack.database is not None and layout.db is not None
        assert layout.app is not None and layout.endpoint is not None
        self.db = stack.database
        self.db_host = f"{layout.db.address}:{stack.database.port}"
        self.host: Host = layout.app
        self.endpoint: Host = layout.endpoint
        self.state = state
        self.dir = state.directory / "app"
        pw = state.secrets(SECRET_NAMES)
        self.db_password, self.admin_password = pw[DB_SECRET], pw[WP_SECRET]

    @property
    def url(self) -> str:
        return f"http://{self.endpoint.address}/"

    def _config(self) -> Path:
        conf = self.dir / "etc-wordpress"
        conf.mkdir(parents=True, exist_ok=True)
        values = {
            "DB_NAME": self.db.db_name,
            "DB_USER": self.db.username,
            "DB_PASSWORD": self.db_password,
            "DB_HOST": self.db_host,
            # The site's URL is its private endpoint's, as the installer would record it.
            "WP_HOME": self.url.rstrip("/"),
            "WP_SITEURL": self.url.rstrip("/"),
        }
        lines = ["<?php"] + [f"define('{k}', '{v}');" for k, v in values.items()]
        # Nothing leaves the lab: no update checks, no cron requests.
        lines += [
            "define('WP_HTTP_BLOCK_EXTERNAL', true);",
            "define('AUTOMATIC_UPDATER_DISABLED', true);",
            "define('DISABLE_WP_CRON', true);",
        ]
        path = conf / "config-default.php"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chown(path, 0, grp.getgrnam(WEB_USER).gr_gid)  # the web server reads it, not writes
        return conf

    def _as_web_user(self, *argv: str) -> list[str]:
        """argv that runs `argv` as the web server's user in the app's namespace, with the
        lab's WordPress config at /etc/wordpress (a private mount namespace)."""
        script = (
            f"mount --bind {shlex.quote(str(self._config()))} /etc/wordpress && "
            f"exec setpriv --reuid={WEB_USER} --regid={WEB_USER} --init-groups {shlex.join(argv)}"
        )
        return in_ns(self.host.ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script)

    def start(self) -> None:
        """Start the web server, on the private endpoint only; after `install`."""
        if _running_in(self.state, "app", self.host.ns):
            return
        self.stop()  # workers of a server that died would hold its port
        # The web server runs as www-data; port 80 is opened to it in its own namespace only.
        run(in_ns(self.host.ns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=80"))
        argv = self._as_web_user("php", "-S", f"{self.endpoint.address}:80", "-t", WORDPRESS_ROOT)
        # Several workers: a page's assets load in parallel.
        env = {"PHP_CLI_SERVER_WORKERS": "4", **mark(self.state.directory)}
        self.state.record({"app": _spawn(argv, self.dir / "php.log", env)})
        deadline = time.monotonic() + 15
        while True:
            try:
                fetch(self.host.ns, self.url + "wp-includes/version.php", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline or not alive(self.state.pids["app"]):
                    raise LabError(
                        f"app: the web server did not start; see {self.dir / 'php.log'}"
                    ) from None
                time.sleep(0.1)

    def install(self) -> None:
        """Install WordPress (through the tunnel to the DB) unless it is installed; raises
        LabError when it is not installed afterwards (the web server is then not started)."""
        # PHP's MySQL client waits a day for an answer by default: a database that accepts
        # but does not answer fails the install in seconds instead.
        argv = self._as_web_user(
            "php",
            "-d",
            "display_errors=stderr",
            "-d",
            f"mysqlnd.net_read_timeout={DB_READ_TIMEOUT_S}",
            "-r",
            INSTALL_PHP,
        )
        env = {"WP_LAB_HOST": str(self.endpoint.address), "WP_LAB_TITLE": SITE_TITLE}
        # As the cloud's startup loop: retried while the database cannot be reached (a node
        # or the database just started again, its path still coming up), bounded.
        deadline = time.monotonic() + INSTALL_RETRY_S
        out, rc = "", 0
        for _ in range(INSTALL_TRIES):
            try:
                p = subprocess.run(
                    argv,
                    input=self.admin_password + "\n",
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    env={**os.environ, **env, **mark(self.state.directory)},
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise LabError(
                    f"app: WordPress's install did not finish within {INSTALL_TIMEOUT_S:.0f} s"
                ) from None
            if INSTALL_MARK in p.stdout:
                return
            out, rc = p.stdout + p.stderr, p.returncode
            if DB_ERROR not in out or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        raise LabError(
            f"app: WordPress is not installed, its web server not started (php exited"
            f" {rc}: {_text(out)[:200]})"
        )

    def front_page(self) -> Page:
        return fetch(self.host.ns, self.url)

    def stop(self) -> None:
        """Stop the web server and its workers (they outlive their parent and keep serving)."""
        pid = self.state.pids.get("app")
        if pid is not None:
            kill_session(self.host.ns, pid)
        self.state.record({"app": None})


def _text(html: str) -> str:
    """What a page says, without its markup, styles and scripts, on one line."""
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def page_ok(page: Page) -> bool:
    return page.status == 200 and f"<title>{SITE_TITLE}" in page.body


def installer_refused(page: Page) -> bool:
    """wp-admin/install.php says WordPress is installed and offers no install form."""
    return INSTALLED in page.body and INSTALL_FORM not in page.body


def page_db_error(page: Page) -> bool:
    return DB_ERROR in page.body
