"""Helpers of the browser tests: Debian's Chromium driven by Selenium, a second origin serving the
pages that embed the widget, the widget's state read from its shadow root, screenshots kept under var/."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from amoiq_chat.settings import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "var" / "browser-artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,800",
         "--hide-scrollbars", "--force-device-scale-factor=1")
STEP_TIMEOUT = 20.0
PASSWORD = "correct-horse-battery"

# What the widget shows, read from its shadow root in one call.
WIDGET_STATE = """
const host = document.querySelector('amoiq-chat'); if (!host) return null;
const r = host.shadowRoot, q = s => r.querySelector(s);
const text = e => e ? e.textContent : null;
let stored = {}; try { stored = JSON.parse(localStorage.getItem('amoiq-chat:' + arguments[0])) || {}; } catch (e) {}
return {
  bubbles: [...r.querySelectorAll('.m')].map(m => ({who: text(m.querySelector('.who')), text: text(m.querySelector('.b')),
    cls: m.className, seq: m.dataset.seq ? +m.dataset.seq : null, status: text(m.querySelector('.st'))})),
  notes: [...r.querySelectorAll('.note')].map(text),
  subtitle: text(q('.head p')), bar: q('.bar').hidden ? null : text(q('.bar')), typing: text(q('.typing')),
  badge: q('.badge').hidden ? 0 : text(q('.badge')), refused: text(q('.refused')),
  launcherLabel: q('.launch').getAttribute('aria-label'), panelOpen: !q('.panel').hidden,
  rating: !!q('.stars'), composer: !q('.comp').hidden, human: !q('.acts .btn').hidden,
  stored: stored
};
"""


def require_chromium() -> None:
    """Fail (never skip) with the way to install Chromium when it is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install Debian's Chromium with"
                    " `apt-get install chromium chromium-driver` (`make test` does it when run as root)")


class Browser:
    """One headless Chromium with a fresh profile (its own browser context), screenshots in one folder."""

    def __init__(self, artifacts: Path, label: str) -> None:
        require_chromium()
        self.profile = tempfile.mkdtemp(prefix="amoiq-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # The driver's path given: Selenium Manager never tries to download one.
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.artifacts = artifacts
        self.label = label

    def use(self, artifacts: Path) -> "Browser":
        """Keep this test's screenshots in its own folder."""
        self.artifacts = artifacts
        return self

    def shot(self, step: str) -> Path:
        """Save a screenshot of the window as artifacts/<step>-<label>.png."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{step}-{self.label}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = STEP_TIMEOUT) -> Any:
        """Poll `condition` until it returns something true; fail naming `what` (and the page's log)."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _: condition())
        except TimeoutException:
            self.shot("timeout")
            logs = [entry["message"] for entry in self.driver.get_log("browser")]
            raise AssertionError(f"{self.label}: timed out waiting for {what}; browser log: {logs[-10:]}") from None

    def quit(self) -> None:
        """Close the browser and drop its profile."""
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


class Widget:
    """The widget on the current page of a browser, driven as a visitor would."""

    def __init__(self, browser: Browser, site_key: str) -> None:
        self.browser = browser
        self.site_key = site_key

    def state(self) -> dict | None:
        """What the widget shows now (None before the script has run)."""
        return self.browser.driver.execute_script(WIDGET_STATE, self.site_key)

    def until(self, predicate: Callable[[dict], Any], what: str, timeout: float = STEP_TIMEOUT) -> dict:
        """Wait until the widget's state satisfies `predicate`; return that state."""
        found: dict = {}

        def check() -> bool:
            state = self.state()
            if state is not None and predicate(state):
                found.update(state)
                return True
            return False

        try:
            self.browser.wait(check, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the widget showed {self.state()}") from None
        return found

    def root(self):
        """The shadow root (for clicks and typing)."""
        host = self.browser.wait(lambda: self.browser.driver.find_elements(By.CSS_SELECTOR, "amoiq-chat"), "the widget")
        return host[0].shadow_root

    def open(self) -> dict:
        """Click the launcher and wait until the panel is open (and the widget configured)."""
        self.root().find_element(By.CSS_SELECTOR, ".launch").click()
        return self.until(lambda s: s["panelOpen"] and (s["composer"] or s["refused"]), "the open, configured panel")

    def connected(self) -> dict:
        """Wait until the widget has joined its conversation (no connecting/reconnecting bar)."""
        return self.until(lambda s: s["stored"].get("sessionId") and s["bar"] is None and s["composer"], "the joined widget")

    def say(self, text: str) -> None:
        """Type a message and press Enter."""
        box = self.root().find_element(By.CSS_SELECTOR, "textarea")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def click(self, css: str, text: str | None = None) -> None:
        """Click the first element matching `css` (and showing `text`)."""
        for element in self.root().find_elements(By.CSS_SELECTOR, css):
            if text is None or element.text.strip() == text:
                element.click()
                return
        raise AssertionError(f"no {css} {text or ''} in the widget")

    def blur(self) -> None:
        """Take the focus out of the widget (a blinking caret would spoil a screenshot comparison)."""
        self.browser.driver.execute_script(
            "const a = document.querySelector('amoiq-chat').shadowRoot.activeElement; if (a) a.blur();")

    def panel_png(self) -> bytes:
        """A screenshot of the open panel alone."""
        return self.root().find_element(By.CSS_SELECTOR, ".panel").screenshot_as_png


def texts(state: dict, who: str | None = None) -> list[str]:
    """The texts of the bubbles (of one sender label)."""
    return [b["text"] for b in state["bubbles"] if who is None or b["who"] == who]


class HostSite:
    """A second origin (its own port) serving the pages that embed the widget, as a customer's site would."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, path: str, widget_src: str, site_key: str, *, key: str | None = None, head: str = "",
             before: str = "") -> str:
        """Publish a shop page embedding the widget; return its URL."""
        data_key = f' data-key="{key}"' if key else ""
        self.pages[path] = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>{head}</head><body>'
            '<h1>Acme shop</h1><p>Fine products since 1921.</p><div class="box"><button>Buy</button><textarea></textarea></div>'
            f'{before}<script src="{widget_src}" data-site-key="{site_key}"{data_key} async></script></body></html>')
        return self.origin + path

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def api(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    """A JSON call to a server (what an admin's tools would do); fails on a non-2xx answer."""
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def set_up_tenant(base: str, **widget: Any) -> dict:
    """Register an admin (a new tenant), create a widget and an agent through the API."""
    tag = os.urandom(4).hex()
    data = api(base, "POST", "/api/auth/register",
               {"username": f"owner_{tag}", "email": f"owner_{tag}@example.com", "password": PASSWORD})["data"]
    token = data["token"]
    made = api(base, "POST", "/api/widgets", {"business_name": f"Acme {tag}", "widget_title": "Acme help",
                                               "welcome_message": "Hello! Ask us anything.", **widget}, token)
    agent = api(base, "POST", "/api/agents", {"username": f"agent_{tag}", "email": f"agent_{tag}@example.com",
                                               "password": PASSWORD, "full_name": f"Alice {tag}"}, token)["data"]["agent"]
    return {"tenant_id": data["tenant"]["id"], "admin_email": f"owner_{tag}@example.com", "publishable_key": data["tenant"]["publishableKey"], "admin_token": token,
            "site_key": made["data"]["widget"]["site_key"], "business_name": f"Acme {tag}", "agent_email": agent["email"], "agent_name": agent["full_name"],
            "agent_id": agent["id"]}


def artifacts_for(request: pytest.FixtureRequest) -> Path:
    """var/browser-artifacts/<test name>/ (emptied first)."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    return folder
