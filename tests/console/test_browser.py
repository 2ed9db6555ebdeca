"""The console in a real browser (Debian's Chromium, driven by Playwright) against a started
``muse console`` and a started ``muse serve`` fleet of two replicas following one store.

Every page loads with no console error and draws its charts; the numbers it shows are
DuckDB's over the same lake; a promotion clicked in the browser reaches the replicas (the
version header of their answers changes) and a rollback clicked there restores it; the
pages work from the keyboard and fit 1280×800. Screenshots of every page are written to
``.cache/console-screenshots/``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.console.browser import ensure_chromium
from tests.console.conftest import ADMIN_KEY, TENANT_KEY, Fleet, make_fleet
from tests.e2e.support import MuseProcess, event, free_port, wait_until

SHOTS = Path(__file__).resolve().parents[2] / ".cache" / "console-screenshots"
PAGES = ("/fleet", "/routing?tenant=bank2", "/tenants?days=366", "/tenants/bank1?days=366",
         "/candidates", "/refresh")  # fmt: skip


@dataclass
class Live:
    fleet: Fleet
    replicas: list[MuseProcess]
    console: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("browser")
    fleet = make_fleet(root, auth=True)
    replicas: list[MuseProcess] = []
    console: subprocess.Popen[bytes] | None = None
    try:
        for n in range(2):
            args = ["--store", fleet.store.url, "--lake", str(root / "replica-lake"),
                    "--cache", str(root / f"cache-{n}"), "--poll", "0.2",
                    "--replica", f"replica-{n}"]  # fmt: skip
            replicas.append(MuseProcess(None, root / f"replica-{n}.log", args).start())
        port = free_port()
        command = MuseProcess.command(
            "console", "--store", fleet.store.url, "--lake", str(fleet.lake),
            "--port", str(port), "--refresh", "1", "--cache", str(root / "console-cache"),
            "--replica", replicas[0].url, "--replica", replicas[1].url,
            "--replica-key", ADMIN_KEY,
        )  # fmt: skip
        with (root / "console.log").open("wb") as log:
            console = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert console is not None
            assert console.poll() is None, (root / "console.log").read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 60, "muse console to answer")
        yield Live(fleet, replicas, url)
    finally:
        if console is not None:
            console.terminate()
            try:
                console.wait(15)
            except subprocess.TimeoutExpired:
                console.kill()
                console.wait(5)
        for r in replicas:
            r.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live.console)
    page = context.new_page()
    page.goto("/login")
    page.fill("#key", ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url("**/fleet")
    yield page
    context.close()


def errors_of(page: Page) -> list[str]:
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(str(error)))
    return found


def test_every_page_loads_without_errors_and_draws_its_charts(page: Page) -> None:
    errors = errors_of(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in PAGES:
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 200, path
        if path.startswith("/tenants/"):
            page.wait_for_selector("#alignment-chart svg", timeout=15_000)
            page.wait_for_selector("#rate-chart svg", timeout=15_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{path} is {width}px wide at 1280x800"
        name = path.strip("/").split("?")[0].replace("/", "-")
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert errors == []


def test_the_numbers_are_duckdbs(page: Page, live: Live) -> None:
    page.goto("/tenants?days=366")
    shown = {
        row.get_attribute("data-tenant"): int(row.get_attribute("data-events") or -1)
        for row in page.locator("#tenants-table tbody tr").all()
    }
    con = duckdb.connect()
    for tenant, predictor in (("bank1", "ensemble-v1"), ("bank2", "single-v1"),
                              ("fintech3", "single-v1")):  # fmt: skip
        ((n,),) = con.execute(
            f"SELECT count(*) FROM read_parquet('{live.fleet.lake}/**/*.parquet', "
            "hive_partitioning=true) WHERE tenant = ? AND predictor = ? AND role = 'live'",
            [tenant, predictor],
        ).fetchall()
        assert shown[tenant] == n

    # A tenant's alignment table: every bin's events, and the top bin at R's 99.9 % quantile.
    page.goto("/tenants/bank1?days=366")
    counts = [
        int(cell.inner_text().replace(",", ""))
        for cell in page.locator("#alignment-table tbody tr td:nth-child(3)").all()
    ]
    config = live.fleet.state.config(live.fleet.first)
    top = float(config.references["fraud-v1"].ppf([0.999])[0])
    lake = f"read_parquet('{live.fleet.lake}/**/*.parquet', hive_partitioning=true)"
    where = "tenant = 'bank1' AND predictor = 'ensemble-v1' AND role = 'live'"
    ((total,),) = con.execute(f"SELECT count(*) FROM {lake} WHERE {where}").fetchall()
    ((above,),) = con.execute(
        f"SELECT count(*) FROM {lake} WHERE {where} AND score > ?", [top]
    ).fetchall()
    assert sum(counts) == total
    assert counts[-1] == above


def test_the_intent_tester_and_the_keyboard(page: Page) -> None:
    page.goto("/routing")
    page.fill("input[name=tenant]", "bank2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#route-live")
    assert page.inner_text("#route-live") == "single-v1"
    page.goto("/fleet")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/fleet")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Fleet"


def served_version(replica: MuseProcess) -> str:
    body = event("e-browser", "bank1")
    r = httpx.post(
        f"{replica.url}/v1/score", json=body, headers={"Authorization": f"Bearer {TENANT_KEY}"}
    )
    assert r.status_code == 200, r.text
    return r.headers["x-muse-config-version"]


def test_promote_and_roll_back_by_clicking(page: Page, live: Live) -> None:
    assert {served_version(r) for r in live.replicas} == {live.fleet.first}
    page.goto("/fleet")
    page.click(f'tr[data-version="{live.fleet.second}"] >> text=Promote…')
    page.wait_for_selector("#changes")
    assert "single-v1 / bank1" in page.inner_text("#changes")
    page.click("#confirm")
    page.wait_for_selector('#outcome[data-state="activated"]', timeout=60_000)
    wait_until(
        lambda: {served_version(r) for r in live.replicas} == {live.fleet.second},
        20,
        "both replicas to serve the promoted version",
    )
    page.goto("/fleet")
    page.click("text=Roll back to")
    page.click("#confirm")
    page.wait_for_selector('#outcome[data-state="activated"]', timeout=60_000)
    wait_until(
        lambda: {served_version(r) for r in live.replicas} == {live.fleet.first},
        20,
        "both replicas to serve the first version again",
    )
    page.goto("/fleet")
    assert page.get_attribute(f'tr[data-version="{live.fleet.first}"]', "data-state") == "active"
