"""Helpers for the browser tests: Debian's Chromium driven by Playwright's sync API (never a downloaded browser),
signing in through the login form, and a watch on what must never happen in the page (dialogs, CSP violations,
script errors)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
# The screenshot test writes into docs/screenshots/ only when asked (CHATWEB_UPDATE_SCREENSHOTS=1, see docs/ui.md),
# so that a test run leaves the tree clean; otherwise into a temporary directory.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("CHATWEB_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="chatweb-screenshots-"))
)

# Runs in every page before its own scripts (Playwright injects it outside the page's CSP): records CSP violations.
WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""

DESKTOP = {"width": 1280, "height": 800}  # the viewport of the desktop tests


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What happened in a page that a test asserts never happened."""

    dialogs: list[str] = field(default_factory=list)
    csp_console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    accept_dialogs: bool = False

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    def on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp_console.append(text)
        elif message.type == "error" and "WebSocket" not in text:
            if message.location.get("url", "").endswith("/favicon.ico"):
                return  # the browser asks for one; chatweb has none
            self.errors.append(text)

    def csp_violations(self, page: Page) -> list[str]:
        """Violations seen by the page (securitypolicyviolation events) and reported on the console."""
        try:
            events = page.evaluate("window.__cspViolations || []")
        except Exception:  # the page is navigating
            events = []
        return [*events, *self.csp_console]

    def assert_clean(self, page: Page) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.csp_violations(page) == [], f"CSP violations: {self.csp_violations(page)}"
        assert self.errors == [], f"script errors: {self.errors}"


def new_page(browser: Browser, **context_options: Any) -> tuple[BrowserContext, Page, Watch]:
    context = browser.new_context(**context_options)
    context.add_init_script(WATCH_SCRIPT)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = Watch()
    page.on("dialog", watch.on_dialog)
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.errors.append(f"pageerror: {exc}"))
    return context, page, watch


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Through the login form, as a person would."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    wait_connected(page)


def wait_connected(page: Page) -> None:
    page.wait_for_function("() => document.getElementById('connection-status')?.textContent === 'Connected'")


def send(page: Page, text: str) -> None:
    """Put text into the composer and press Enter."""
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")


def last_reply(page: Page) -> Any:
    return page.locator("#messages article.message.assistant").last


def wait_reply_done(page: Page, timeout: float = 20_000) -> None:
    """Until the last reply has finished and the server's rendering of it has replaced the live one."""
    page.wait_for_function(
        """() => { const r = [...document.querySelectorAll('#messages article.message.assistant')].pop();
                   return r && !['streaming', 'pending'].includes(r.dataset.status) && !r.dataset.live; }""",
        timeout=timeout,
    )


# Every payload: shown as text or removed, never run, never a live link to a script.
HOSTILE = "\n\n".join(
    [
        "<script>window.__pwned = 1; alert('script')</script>",
        "<img src=x onerror=\"window.__pwned = 2; alert('img')\">",
        '<svg onload="alert(\'svg\')"><script>alert("svg script")</script></svg>',
        '<iframe src="javascript:alert(\'iframe\')"></iframe> <iframe srcdoc="<script>alert(1)</script>"></iframe>',
        "<a href=\"javascript:alert('raw link')\">raw link</a> <div onmouseover=\"alert('hover')\">hover me</div>",
        "[md link](javascript:alert('md')) [upper](JaVaScRiPt:alert(1)) [entity](&#106;avascript:alert(1))",
        "[tab](java\tscript:alert(1)) [vb](vbscript:msgbox(1))",
        "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![img md](javascript:alert('img')) ![pixel](data:image/png;base64,iVBORw0KGgo=) ![remote](https://example.com/t.png)",
        "<javascript:alert('autolink')> <https://example.com/ok> [ref][r]\n\n[r]: javascript:alert('ref')",
        "<details open ontoggle=\"alert('toggle')\"><summary>x</summary></details>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert('mxss')></style></mglyph></table></mtext></math>",
        "<style>body { display: none }</style> <link rel=stylesheet href=//evil.example/x.css>",
        "<form action=\"javascript:alert('form')\"><button>go</button></form>",
        '<object data="javascript:alert(1)"></object> <embed src="javascript:alert(1)">',
        "```html\" onmouseover=\"alert('fence')\n<b>in a fence</b>\n```",
        "| a | b |\n|:--|--:|\n| <img src=x onerror=alert('cell')> | [x](javascript:alert('cell')) |",
        "[fine link](https://example.com/safe) and **bold** and `code`",
    ]
)
