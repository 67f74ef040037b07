"""A real-browser check of the cookie banner (PM-III-6, PM-IV-3), outside the pytest suite.

    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright   # once; Chromium from the OS
    /tmp/pw/bin/python tests/e2e/browser_check.py [--shots DIR] [--chromium /usr/bin/chromium]

Playwright is not a project requirement, so this is a script (pytest collects only test_*.py and
script/test does not run it). It migrates a throw-away SQLite database, loads the register, starts
`manage.py runserver` from the project's .venv on a free port, and drives Chromium through what a person
does: a first visit (no cookie), the banner's two buttons (same size and look), Refuse all, the choose
page, a GPC browser, a cross-site forged post (403) and sign-up. It exits non-zero at the first broken
promise and leaves screenshots in --shots (default /tmp/shots).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
CHOICE = "privacyops_choice"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok: {message}")


@contextlib.contextmanager
def django_server(workdir: Path):
    env = {
        **os.environ,
        "DEBUG": "true",
        "SECRET_KEY": "browser-check-only",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "EMAIL_URL": "consolemail://",
    }
    env.pop("REDIS_URL", None)
    # --skip-checks: this checks the browser's view of the pages; `manage.py check` has its own step in script/test.
    for command in (["migrate", "--noinput", "--skip-checks"], ["loadpolicy", "--skip-checks"]):
        subprocess.run([str(PYTHON), "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [str(PYTHON), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 (our own loopback server)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("FAILED: the development server did not start")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def attacker_site(target: str):
    """Another site (localhost instead of 127.0.0.1: cross-site) whose page posts to our banner endpoint."""
    folder = Path(tempfile.mkdtemp())
    (folder / "index.html").write_text(
        f'<form id="f" method="post" action="{target}/cookies/choice">'
        '<input type="hidden" name="choice" value="accept-all"><button>Win a prize</button></form>'
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()


def names(context) -> set[str]:
    return {cookie["name"] for cookie in context.cookies()}


def run(base: str, shots: Path, chromium: str) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()

        page.goto(f"{base}/")
        check(names(context) == set(), "a first visit sets no cookie")
        accept, refuse = page.locator("button[value=accept-all]"), page.locator("button[value=refuse-all]")
        a, r = accept.bounding_box(), refuse.bounding_box()
        check((a["width"], a["height"]) == (r["width"], r["height"]), "Accept all and Refuse all are the same size")
        style = "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color, getComputedStyle(e).fontWeight]"
        check(accept.evaluate(style) == refuse.evaluate(style), "Accept all and Refuse all look the same")
        page.locator(".cookie-banner").screenshot(path=str(shots / "01-banner.png"))
        page.screenshot(path=str(shots / "02-overview.png"), full_page=True)

        refuse.click()
        page.wait_for_load_state()
        check(names(context) == {CHOICE}, "Refuse all sets only the choice cookie")
        check(page.locator(".cookie-banner").count() == 0, "the banner is gone after the choice")
        check(page.locator("img.beacon").count() == 0, "no beacon without analytics")

        page.click("text=Cookie settings")
        page.check("#cat-analytics")
        page.screenshot(path=str(shots / "03-cookie-settings.png"), full_page=True)
        page.click("button[value=save]")
        page.wait_for_load_state("networkidle")
        check(names(context) == {CHOICE, "privacyops_analytics"}, "allowing analytics lets the beacon set its cookie")

        gpc = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
        gpc_page = gpc.new_page()
        gpc_page.goto(f"{base}/cookies")
        check("Global Privacy Control signal honoured" in gpc_page.content(), "a GPC browser is told the signal is honoured")
        check(names(gpc) == set(), "a GPC browser's first visit sets no cookie")

        forged = browser.new_context()
        forged_page = forged.new_page()
        with attacker_site(base) as evil:
            forged_page.goto(evil)
            with forged_page.expect_navigation():
                forged_page.click("button")
            check("not sent from one of our pages" in forged_page.content(), "a cross-site forged post is refused")
        check(names(forged) == set(), "the forged post set no cookie")

        signup = browser.new_context(viewport={"width": 1100, "height": 900})
        form = signup.new_page()
        form.goto(f"{base}/signup")
        form.fill("#id_name", "Ada Example")
        form.fill("#id_email", "ada@example.org")
        form.fill("#id_password1", "a long and unusual passphrase")
        form.fill("#id_password2", "a long and unusual passphrase")
        form.fill("#id_date_of_birth", "1990-05-17")
        form.fill("#id_country", "DE")
        check(not form.is_checked("#id_accept_policy") and not form.is_checked("#id_marketing"), "no box is pre-ticked")
        form.check("#id_accept_policy")
        form.click("text=Create my account")
        form.wait_for_url(f"{base}/my/consents")
        form.screenshot(path=str(shots / "04-my-consents.png"), full_page=True)
        check("Refused" in form.content(), "the unticked marketing box is recorded as refused")
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default=str(Path(tempfile.gettempdir()) / "shots"), help="where the screenshots go")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, django_server(Path(workdir)) as base:
        run(base, Path(args.shots), args.chromium)
    print("browser check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
