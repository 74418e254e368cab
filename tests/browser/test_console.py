"""The operator's console in a real browser, against the real service on both shapes: gunicorn, Celery workers
and beat on the filesystem broker (embedded) or Redis (production). An operator logs in, reads the dashboard
(slots, queue depth, workers alive, beat), sees the warning when queries wait and no worker answers, finds a
query by guid, cancels it, re-runs it, and downloads a part.

Every page is saved under var/screenshots/ for a reviewer; with INSIGHTS_UPDATE_README_PICTURE=1 the embedded
dashboard is also copied to docs/operator-dashboard.png, the README's picture."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.seed_requests import REQUEST_1
from tests.service import ROOT, SHAPES, Service, service_running, shape_make

SCREENSHOTS = ROOT / "var" / "screenshots"
README_PICTURE = ROOT / "docs" / "operator-dashboard.png"
OPERATOR, PASSWORD = "operator", "console-tests-password"
CALLS: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["TimeStamp", "Ani", "Dnis", "Duration"]}},
    "description": "Calls for the March review",
}


@dataclass
class Console:
    service: Service
    key: str  # the demo customer's API key

    @property
    def shape(self) -> str:
        return self.service.shape.name

    def url(self, path: str) -> str:
        return self.service.base_url + path

    def submit(self, body: dict[str, Any]) -> str:
        response = self.service.request("POST", "/_rest/v4/dwh/Q", key=self.key, body=body)
        assert response.status == 201, response.body
        return str(response.json()["id"])

    def status(self, guid: str) -> str:
        return str(
            self.service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=self.key).json()["status"]
        )

    def worker_ensure(self) -> None:
        if not any(worker.poll() is None for worker in self.service.workers):
            self.service.workers_stop()
            self.service.worker_start()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The admin's CSS and scripts, collected as the image and `make run` do (whitenoise serves STATIC_ROOT)."""
    root = tmp_path_factory.mktemp("static")
    env = {**os.environ, "STATIC_ROOT": str(root), "INSIGHTS_VAR_DIR": str(root.parent / "static-var")}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    return root


@pytest.fixture(scope="module", params=SHAPES)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, static_root: Path
) -> Iterator[Console]:
    var_dir = tmp_path_factory.mktemp(f"console-{request.param}")
    with service_running(
        shape=shape_make(request.param, request, var_dir, "console"),
        var_dir=var_dir,
        extra_env={"STATIC_ROOT": str(static_root)},
    ) as service:
        key = service.customer_create(DEMO_CUSTOMER_KEYS[0])
        service.customer_create(DEMO_CUSTOMER_KEYS[1], max_concurrent=3)
        service.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User\n"
            f"User.objects.create_superuser({OPERATOR!r}, 'operator@example.com', {PASSWORD!r})",
        )
        service.worker_start()
        service.beat_start()
        yield Console(service, key)


@pytest.fixture()
def operator(browser_page: Page, console: Console) -> Page:
    """A browser page logged in to the admin as a superuser."""
    page = browser_page
    page.goto(console.url("/admin/login/"))
    page.fill("#id_username", OPERATOR)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("h1")).to_have_text("Operator's console")
    return page


def _screenshot(page: Page, console: Console, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{console.shape}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Elements whose content is wider than they are (scrolled or clipped sideways), the page itself included.
CLIPPED = """() => [document.documentElement, ...document.querySelectorAll('#content *')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && !e.closest('.visually-hidden')
          && (e === document.documentElement || getComputedStyle(e).overflowX !== 'visible'))
  .map(e => `${e.tagName.toLowerCase()}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def _wider_than_the_window(page: Page) -> list[str]:
    """What does not fit a 1280 px window: the page scrolls sideways, or a box scrolls or clips its content."""
    return list(page.evaluate(CLIPPED))


def _dashboard(page: Page, console: Console, ready: str, timeout: float = 30) -> None:
    """Open the dashboard, reloading until `ready` (a JS condition on the page) holds: workers answer and beat
    records its tick a few seconds after they start."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(console.url("/admin/"))
        if page.evaluate(ready) or time.monotonic() > deadline:
            return
        time.sleep(1)


def _wait_status(console: Console, guid: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := console.status(guid)) != wanted:
        assert time.monotonic() < deadline, f"{guid} is {status}, not {wanted}"
        time.sleep(0.2)


def _find(page: Page, console: Console, guid: str) -> None:
    """Search the query list for a guid, through the search box."""
    page.goto(console.url("/admin/queries/queryrequest/"))
    page.fill("#searchbar", guid)
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr th a")).to_have_text(guid)


def _action(page: Page, name: str) -> str:
    """Run an admin action on the one listed query; the message it left."""
    page.check("#result_list tbody tr input.action-select")
    page.select_option("select[name=action]", name)
    page.click("button[name=index]")
    return page.locator("ul.messagelist").text_content() or ""


def test_the_landing_page_leads_to_docs_console_and_health(browser_page: Page, console: Console) -> None:
    page = browser_page
    page.goto(console.url("/"))
    expect(page.locator("h1")).to_have_text("Insights")
    _screenshot(page, console, "landing")
    assert page.get_attribute("#link-docs", "href") == "/_rest/v4/docs"
    assert page.get_attribute("#link-health", "href") == "/healthz"
    page.click("#link-admin")
    expect(page.locator("#id_username")).to_be_visible()  # the console asks for a login
    page.goto(console.url("/healthz"))
    assert '"ok"' in page.content()


def test_the_dashboard_shows_slots_queue_workers_and_beat(operator: Page, console: Console) -> None:
    console.worker_ensure()
    guids = [console.submit(REQUEST_1), console.submit(CALLS)]
    for guid in guids:
        _wait_status(console, guid, "Completed")
    page = operator
    _dashboard(
        page,
        console,
        "document.querySelector('#figure-workers strong').textContent.trim() === '1' && "
        "document.querySelector('#figure-beat strong').textContent.includes('s ago')",
    )
    expect(page.locator("#figure-workers strong")).to_have_text("1")
    expect(page.locator("#figure-workers .help")).to_contain_text("w0-")
    expect(page.locator("#figure-queue strong")).to_have_text("0")
    expect(page.locator("#figure-beat strong")).to_contain_text("s ago")
    slots = page.locator("#dashboard-slots tbody tr")
    expect(slots).to_have_count(2)
    expect(slots.filter(has_text=DEMO_CUSTOMER_KEYS[0])).to_contain_text("0 of 2")
    expect(slots.filter(has_text=DEMO_CUSTOMER_KEYS[1])).to_contain_text("0 of 3")
    recent = page.locator("#dashboard-recent")
    expect(recent.locator("thead")).to_contain_text("Completed")
    expect(recent.locator("tbody td").first).to_have_text("0")  # Pending
    expect(recent.locator("tbody td").nth(1)).to_have_text(re.compile(r"^[2-9]\d*$"))  # Completed
    expect(page.locator(".dashboard-warning")).to_have_count(0)
    assert _wider_than_the_window(page) == []
    picture = _screenshot(page, console, "dashboard")
    if console.shape == "embedded" and os.environ.get("INSIGHTS_UPDATE_README_PICTURE") == "1":
        shutil.copyfile(picture, README_PICTURE)  # on request only: a test run leaves the checkout as it was


def test_queued_with_no_worker_is_flagged_then_canceled_and_rerun(operator: Page, console: Console) -> None:
    console.service.workers_stop()
    guid = console.submit(REQUEST_1)
    page = operator
    _dashboard(page, console, "document.querySelector('#figure-queue strong').textContent.trim() === '1'")
    expect(page.locator("#figure-queue strong")).to_have_text("1")
    expect(page.locator("#figure-workers strong")).to_have_text("0")
    expect(page.locator(".dashboard-warning").first).to_have_text(
        "1 query is queued and no worker answers: start one (celery -A insights worker)."
    )
    _screenshot(page, console, "dashboard-warning")

    _find(page, console, guid)
    assert "Cancel requested for 1 query." in _action(page, "cancel_queries")
    assert console.status(guid) == "Canceled"
    _find(page, console, guid)
    expect(page.locator("#result_list tbody tr td.field-status_shown")).to_have_text("Canceled")

    message = _action(page, "rerun_queries")
    # The admin capitalises a message's first letter (capfirst): the guid may start with "A".."F".
    rerun = re.search(rf"{guid}: re-run as ([0-9a-f]{{32}})\.", message, re.IGNORECASE)
    assert rerun, message
    _screenshot(page, console, "rerun")
    console.worker_ensure()
    _wait_status(console, rerun.group(1), "Completed")
    _find(page, console, rerun.group(1))
    expect(page.locator("#result_list tbody tr td.field-status_shown")).to_have_text("Completed")
    assert _wider_than_the_window(page) == []
    _screenshot(page, console, "query-list")


def test_a_query_page_shows_its_first_rows_and_downloads_a_part(operator: Page, console: Console) -> None:
    console.worker_ensure()
    guid = console.submit(CALLS)
    _wait_status(console, guid, "Completed")
    expected = console.service.download_rows(guid, console.key)
    page = operator
    _find(page, console, guid)
    expect(page.locator("#result_list td.field-description_short")).to_have_text("Calls for the March…")
    assert _wider_than_the_window(page) == []
    page.click(f"#result_list a:text('{guid}')")
    expect(page.locator("h1")).to_have_text(f"Query {guid}")
    expect(page.locator(".field-effective_output .readonly")).to_have_text(
        "format csv, compression gzip, dialect rfc4180, header names"
    )
    expect(page.locator(".field-destination_shown .readonly")).to_have_text("this server's local storage")
    table = page.locator("table.first-rows")
    expect(table.locator("thead th")).to_have_text(["TimeStamp", "Ani", "Dnis", "Duration"])
    expect(table.locator("tbody tr")).to_have_count(min(20, len(expected) - 1))
    first = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert ",".join(first) == expected[1]
    assert _wider_than_the_window(page) == []
    _screenshot(page, console, "query-detail")

    with page.expect_download() as started:
        page.click("a.part-download")
    download = started.value
    assert download.suggested_filename.endswith("__000000000000.csv.gz")
    content = Path(download.path()).read_bytes()
    assert content[:2] == b"\x1f\x8b"  # gzip
    assert gzip.decompress(content).decode().splitlines() == expected
