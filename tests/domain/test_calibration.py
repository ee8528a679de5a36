from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np

from app.config.settings import Settings
from app.domain.calibration import calibrate, duplicate_threshold, review_threshold
from testkit.queue import app_env, spawn


def synthetic(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    similarity = np.where(positive, rng.normal(0.9, 0.05, n), rng.normal(0.6, 0.1, n)).clip(-1, 1)
    return similarity, positive


def test_thresholds_meet_their_targets() -> None:
    similarity, positive = synthetic()
    t = duplicate_threshold(similarity, positive, 0.995)
    assert positive[similarity >= t].mean() >= 0.995
    assert positive[similarity >= t - 0.02].mean() < 0.995 or t - 0.02 < similarity.min()
    r = review_threshold(similarity, positive, 0.98)
    assert (similarity[positive] >= r).mean() >= 0.98
    fitted = calibrate(similarity, positive, rounds=200)
    assert fitted.duplicate.low <= fitted.duplicate.value <= fitted.duplicate.high
    assert fitted.review.value <= fitted.duplicate.value
    assert fitted.positives == int(positive.sum())


async def test_calibrate_command_writes_what_the_service_reads(
    make_settings: Callable[..., Settings], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    similarity, positive = synthetic()
    pairs = tmp_path / "pairs.csv"
    lines = ["similarity,is_duplicate"] + [f"{s:.5f},{int(p)}" for s, p in zip(similarity, positive, strict=True)]
    pairs.write_text("\n".join(lines) + "\n")
    process = spawn(["calibrate", "--pairs", str(pairs), "--model", "efficientnet-lite0-gem3-224"], app_env(settings))
    out, err = await asyncio.to_thread(process.communicate, None, 120)
    assert process.returncode == 0, err
    assert "duplicate_threshold" in out and "bootstrap interval" in out
    written = json.loads(settings.thresholds_file.read_text())["models"]["efficientnet-lite0-gem3-224"]
    from app.config.thresholds import resolve_thresholds

    resolved = resolve_thresholds(settings.policy, "efficientnet-lite0-gem3-224", settings.thresholds_file)
    assert resolved.duplicate == written["duplicate"] and resolved.sources["duplicate"] == "thresholds_json"


async def test_calibrate_from_reviews_learns_the_grey_band_and_only_tightens(
    make_settings: Callable[..., Settings], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from app.composition import open_database
    from app.config.thresholds import resolve_thresholds
    from app.domain.review import Choice

    settings = make_settings()
    model = "efficientnet-lite0-gem3-224"
    rng = np.random.default_rng(5)
    # People's decisions in the grey band (0.60 - 0.95): copies mostly above 0.8, distinct pictures below.
    is_copy = rng.random(400) < 0.5
    cosine = np.where(is_copy, rng.uniform(0.78, 0.95, 400), rng.uniform(0.6, 0.8, 400))

    async def decide(count: int) -> None:
        async with open_database(settings) as database, database.units() as uow:
            for s, copy in zip(cosine[:count], is_copy[:count], strict=True):
                choice = Choice.DUPLICATE if copy else Choice.DISTINCT
                await uow.reviews.add(1, choice, 2, "alice", Choice.DISTINCT, float(s), {"version": 0})
            await uow.commit()

    async def run() -> tuple[int, str, str]:
        process = spawn(["calibrate", "--from-reviews", "--model", model], app_env(settings))
        out, err = await asyncio.to_thread(process.communicate, None, 120)
        return process.returncode, out, err

    await decide(60)  # few decisions: a wide fit
    code, out, err = await run()
    assert code == 0, err
    assert "from 60 review decisions" in out and "written to" in out
    first = json.loads(settings.thresholds_file.read_text())["models"][model]["settled_fit"]["width"]
    resolved = resolve_thresholds(settings.policy, model, settings.thresholds_file)
    assert resolved.settled_duplicate is not None and 0.7 < resolved.settled_duplicate <= 0.95
    assert resolved.settled_unique is not None and resolved.settled_unique <= resolved.settled_duplicate

    await decide(400)  # many more: tighter, so it replaces the first fit
    code, out, _ = await run()
    assert code == 0 and "written to" in out
    second = json.loads(settings.thresholds_file.read_text())["models"][model]["settled_fit"]
    assert second["width"] < first and second["decisions"] == 460
    code, out, _ = await run()  # the same decisions again: not tighter, so nothing is written
    assert code == 0 and "not written" in out
