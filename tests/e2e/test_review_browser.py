"""The review page in a real browser (Debian's chromium driven by Playwright) against `serve` on MariaDB with 50
seeded review items: sign in, settle them all by keyboard, undo one, and check the database and the upstream
rows; a second browser context deciding an item the first has just settled gets the refusal. Screenshots are
kept in artifacts/review/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from app.config.settings import FetchSettings, Settings
from testkit.image_server import ImageServer
from testkit.images import REPO, cropped, flipped, jpeg, photo
from testkit.queue import DISTINCT_BASES, app_env, free_port, insert_rows, outcomes, spawn, until_ready
from tests.support import grant

pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts" / "review"
BASES = DISTINCT_BASES[27:] + DISTINCT_BASES[:24]  # 27 photos, a colourful one first


def mirrored_copies(server: ImageServer) -> list[dict[str, object]]:
    """Each photo, then two mirrored copies: with no duplicate threshold reachable, a review threshold under
    which the photos are apart (they are pairwise below 0.75), and no verification, both copies are `review`
    verdicts: at least 50 (a copy or two may land elsewhere)."""
    rows: list[dict[str, object]] = []
    for n, base in enumerate(BASES):
        image = photo(base)
        server.put(f"/cdn/{base}.jpg", jpeg(image))
        server.put(f"/cdn/{base}-m1.jpg", jpeg(flipped(image), 85))
        server.put(f"/cdn/{base}-m2.jpg", jpeg(cropped(flipped(image), 0.8), 80))
        rows += [
            {"id": 3 * n + k + 1, "image_url": f"{base}{suffix}.jpg"} for k, suffix in enumerate(("", "-m1", "-m2"))
        ]
    return rows


async def shown(page: Page) -> str:
    return str(await page.locator("#item").get_attribute("data-image-id"))


async def press_and_wait(page: Page, key: str) -> None:
    async with page.expect_navigation():
        await page.keyboard.press(key)


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/review")
    await page.fill("#key", key)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def test_review_browser_settles_fifty_by_keyboard(
    make_settings: Callable[..., Settings], server: ImageServer, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    settings = make_settings(fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]))
    key = (await grant(settings, "alice", "review"))["Authorization"].removeprefix("Bearer ")
    other_key = (await grant(settings, "bob", "review"))["Authorization"].removeprefix("Bearer ")
    await insert_rows(settings, mirrored_copies(server))
    port = free_port()
    env = app_env(
        settings,
        APP_WORKER__ENABLED="true",
        APP_POLICY__DUPLICATE_THRESHOLD="0.9999",
        APP_POLICY__REVIEW_THRESHOLD="0.75",
        APP_POLICY__PHASH_THRESHOLD="0",
        APP_VERIFY__ENABLED="false",
    )
    service = spawn(["serve", "--port", str(port)], env, log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await until_ready(client)
        for _ in range(1200):
            rows = await outcomes(settings)
            if all(r["similarity"] == "done" for r in rows.values()):
                break
            await asyncio.sleep(0.1)
        in_review = sorted(i for i, r in rows.items() if r["status"] == "review")
        assert len(in_review) >= 50, {i: (r["status"], r["verdict"]) for i, r in rows.items()}

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            alice = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
            await alice.goto(f"{base}/review")
            await alice.screenshot(path=str(ARTIFACTS / "sign-in.png"))
            await sign_in(alice, base, key)
            await alice.wait_for_load_state("networkidle")
            await alice.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

            # bob opens the first item too, and waits
            bob = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()  # a phone
            await sign_in(bob, base, other_key)
            contested = await shown(bob)
            await bob.screenshot(path=str(ARTIFACTS / "review-phone.png"))

            start = time.perf_counter()
            settled: dict[str, str] = {}
            for n in range(50):
                image_id = await shown(alice)
                choice = "n" if n % 10 == 9 else "d"  # every tenth: not a duplicate
                await press_and_wait(alice, choice)
                settled[image_id] = choice
            elapsed = time.perf_counter() - start
            left = len(in_review) - 50
            assert f"{left} waiting" in await alice.content()
            await press_and_wait(alice, "z")  # undo the last one
            undone = await shown(alice)
            assert undone == list(settled)[-1]
            assert "undone" in (await alice.locator("#message").inner_text())
            await alice.screenshot(path=str(ARTIFACTS / "after-undo.png"))

            # bob's page is stale: his decision on the item alice settled is refused, and says why
            await press_and_wait(bob, "d")
            message = await bob.locator("#message").inner_text()
            assert "changed since it was shown" in message, message
            await bob.screenshot(path=str(ARTIFACTS / "refused.png"))
            await browser.close()
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 60)

    print(f"review browser test: 50 items settled by keyboard in {elapsed:.1f} s, one undone, a stale one refused")
    assert elapsed < 120
    rows = await outcomes(settings)
    by_image = {str(r["image_id"]): (i, r) for i, r in rows.items()}
    for image_id, choice in settled.items():
        source_id, row = by_image[image_id]
        if image_id == undone:
            assert (row["status"], row["verdict"]) == ("review", "review"), row
        elif choice == "d":
            assert (row["status"], row["verdict"]) == ("similarity", "duplicate"), row
        else:
            assert (row["status"], row["verdict"]) == ("tag_extension", "unique"), row
    assert contested in settled
