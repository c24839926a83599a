"""Browser tests of the advisor console: the whole local stack (functions, Twilio emulator,
offline model, Supabase API stand-in, console) and headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from devstack.console import DIST
from devstack.simulate import send_inbound
from devstack.stack import Ports, Stack

MARIA_NUMBER = "+14155238886"
CARLOS_NUMBER = "+5742044644"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM_PATH")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    return path


@pytest.fixture(scope="package")
def stack(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (DIST / "app.js").is_file():
        pytest.fail("the console is not built: `make test` runs `make console` first")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", pg_admin_url)
        patch.delenv("OPENAI_API_KEY", raising=False)
        # Each reply is sent while the webhook request runs: when it returns, the turn is over.
        overrides = {"BURST_WAIT_SECONDS": "0"}
        dev_dir: Path = tmp_path_factory.mktemp("console-stack")
        with Stack(dev_dir, Ports.free(), overrides=overrides, fresh_database=True) as running:
            yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_console(stack: Stack, browser: Browser) -> Iterator[Any]:
    contexts = []
    errors: list[Exception] = []

    def sign_in(email: str, viewport: ViewportSize | None = None) -> Page:
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(stack.env["CONSOLE_URL"])
        page.get_by_test_id("login-email").fill(email)
        page.get_by_test_id("login-password").fill("dev-password")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("sign-out")).to_be_visible()
        expect(page.get_by_test_id("offline-indicator")).to_have_count(0)
        return page

    yield sign_in
    for context in contexts:
        context.close()
    assert errors == [], "the console raised uncaught errors"


def customer_writes(stack: Stack, customer: str, advisor_number: str, body: str) -> None:
    """A signed Twilio webhook call, as Twilio makes it; its turn is done when it returns."""
    response, _ = send_inbound(stack.env, customer, advisor_number, body)
    assert response.status_code == 200, response.text


def sent_to(stack: Stack, customer: str) -> list[dict[str, Any]]:
    sent = requests.get(stack.env["TWILIO_EMULATOR_URL"] + "/messages", timeout=5).json()
    return [m for m in sent if m["to"] == f"whatsapp:{customer}"]


def conversation_item(page: Page, customer: str) -> Any:
    return page.get_by_test_id("conversation-item").filter(has_text=customer)
