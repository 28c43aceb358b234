"""The browser tests' shared fixtures: one Chromium per module, and a page with alice signed in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.pages import DESKTOP, Watch, chromium, new_page, sign_in
from tests.conftest import PASSWORD


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, live_server, alice) -> Iterator[tuple[Page, Watch]]:
    context, page, watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    yield page, watch
    context.close()
