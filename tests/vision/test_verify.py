"""Pure parts of verification and the second look: no IO, real pixels."""

from __future__ import annotations

import random
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.domain.models import Verified
from app.vision.content_box import analysis_grey, banded_box, content_box, looks_framed
from app.vision.local_features import QueryFeatures, features, grey, mirrored
from app.vision.verify import VerifyPolicy, compare_aligned, ratio_matches, verify
from bench.extra_variants import t_sticker
from testkit.images import cropped, flipped, keystoned, meme, photo, resized, screenshot, smooth_wallpaper


def test_mirrored_features_equal_detection_on_the_mirror_image() -> None:
    image = grey(photo("b0587"))
    derived = mirrored(features(image))
    detected = features(np.ascontiguousarray(image[:, ::-1]))
    distances = []
    for point, descriptor in zip(derived.points, derived.descriptors, strict=True):
        at_same_place = np.hypot(*(detected.points - point).T) < 0.5  # one place may hold several orientations
        if at_same_place.any():
            distances.append(np.linalg.norm(detected.descriptors[at_same_place] - descriptor, axis=1).min())
    assert len(distances) > 0.8 * len(derived.points)
    assert np.median(distances) < 0.01 and np.percentile(distances, 90) < 0.2  # (unrelated descriptors: ~1)


def _knn_ratio_matches(query: np.ndarray, base: np.ndarray, ratio: float) -> tuple[list[int], list[int]]:
    """The reference: OpenCV's brute-force 2-NN matcher, ratio test, the closest query per base keypoint (the
    earlier on a tie), base keypoints in the order they were first proposed."""
    best: dict[int, tuple[float, int]] = {}
    for first, second in cv2.BFMatcher(cv2.NORM_L2).knnMatch(query, base, k=2):
        if first.distance < ratio * second.distance:
            kept = best.get(first.trainIdx)
            if kept is None or first.distance < kept[0]:
                best[first.trainIdx] = (first.distance, first.queryIdx)
    return [q for _, q in best.values()], list(best)


@pytest.mark.parametrize("pair", [("b0587", "b0587"), ("b0587", "b0411"), ("b0012", "b0050"), ("b0573", "b0587")])
@pytest.mark.parametrize("ratio", [0.8, 0.95])
def test_ratio_matches_equal_the_knn_matcher(pair: tuple[str, str], ratio: float) -> None:
    """The matrix-product matcher keeps the k-NN matcher's matches and their order (RANSAC's seeded sampling
    depends on it); the query is a rotated, shrunk copy, so the matches are not all trivial."""
    query = features(grey(photo(pair[0]).rotate(7, expand=True).resize((400, 300))))
    base = features(grey(photo(pair[1])))
    expected = _knn_ratio_matches(query.descriptors, base.descriptors, ratio)
    query_idx, base_idx = ratio_matches(query.descriptors, base.descriptors, ratio)
    assert len(expected[1]) > 0
    assert (query_idx.tolist(), base_idx.tolist()) == expected


def test_identity_alignment_agrees_and_another_picture_does_not() -> None:
    one = features(grey(photo("b0587")))
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    same = compare_aligned(one, one, identity)
    assert same.disagreement == 0.0 and same.overlap == pytest.approx(1.0, abs=0.1) and same.compared > 40
    other = features(grey(photo("b0411").resize(photo("b0587").size)))
    assert compare_aligned(one, other, identity).disagreement > 0.5


@pytest.mark.parametrize(
    "variant",
    [lambda i: resized(i, 0.5), lambda i: cropped(i, 0.75), flipped],
    ids=["resized", "cropped", "flipped"],
)
def test_copies_confirm_with_an_agreeing_overlap(variant) -> None:  # type: ignore[no-untyped-def]
    base = features(grey(photo("b0587")))
    result = verify(QueryFeatures(variant(photo("b0587"))), base, VerifyPolicy())
    assert result.outcome.value == "confirmed"
    assert result.disagreement < 0.2


def test_content_box_finds_the_photo_in_a_screenshot_and_nothing_in_a_plain_photo() -> None:
    shot = screenshot(photo("b0587"))
    box = content_box(shot)
    assert box is not None
    left, top, right, bottom = box
    # the photo was pasted at (360, 120) on a 1440 x 900 canvas
    assert left == pytest.approx(360 / 1440, abs=0.03) and top == pytest.approx(120 / 900, abs=0.03)
    assert content_box(photo("b0587")) is None


def test_content_box_finds_the_photo_on_a_page_between_dark_bars() -> None:
    """A white page between a dark navigation bar and a dark footer: the border's colour is the bars', the page
    itself is the background; the sidebar's pictures joined to the bars are the frame, not the picture."""
    page = Image.new("RGB", (1400, 900), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 1400, 50), fill=(33, 37, 41))
    draw.rectangle((0, 850, 1400, 900), fill=(33, 37, 41))
    for n in range(6):
        draw.rectangle((1100, 70 + n * 130, 1380, 180 + n * 130), fill=(40 * n, 200 - 30 * n, 120))
        draw.text((1100, 182 + n * 130), "a caption", fill=(0, 0, 0))
    picture = photo("b0420")
    picture.thumbnail((700, 520))
    page.paste(picture, (150, 150))
    box = content_box(page)
    assert box == pytest.approx(
        (150 / 1400, 150 / 900, (150 + picture.width) / 1400, (150 + picture.height) / 900), abs=0.03
    )


@pytest.mark.parametrize(
    ("top", "bottom"), [(0.2, 0.15), (0.25, 0.0), (0.12, 0.12)], ids=["both", "top only", "thin bands"]
)
def test_banded_box_finds_the_picture_between_caption_bands(top: float, bottom: float) -> None:
    total = 1 + top + bottom
    picture = (0.0, top / total, 1.0, (1 + top) / total)
    assert banded_box(meme(photo("b0587"), top=top, bottom=bottom)) == pytest.approx(picture, abs=0.02)


def test_banded_box_finds_a_smooth_picture_the_textured_region_misses() -> None:
    shown = meme(smooth_wallpaper(1))
    picture = (0.0, 0.2 / 1.35, 1.0, 1.2 / 1.35)
    assert banded_box(shown) == pytest.approx(picture, abs=0.02)
    region = content_box(shown)
    assert region is None or region != pytest.approx(picture, abs=0.05)


@pytest.mark.parametrize("name", ["screenshot", "meme", "plain photo"])
def test_the_frame_finders_answer_the_same_from_the_image_or_its_analysis_grey(name: str) -> None:
    """The second look makes the analysis grey once and hands it to all three finders."""
    image = {"screenshot": screenshot(photo("b0587")), "meme": meme(photo("b0420")), "plain photo": photo("b0587")}[
        name
    ]
    grey_once = analysis_grey(image)
    assert content_box(grey_once) == content_box(image)
    assert banded_box(grey_once) == banded_box(image)
    assert looks_framed(grey_once) == looks_framed(image)
    assert (content_box(image), banded_box(image), looks_framed(image)) != (None, None, False) or name == "plain photo"


def test_banded_box_leaves_plain_and_busy_pictures_alone() -> None:
    assert banded_box(photo("b0587")) is None
    assert banded_box(smooth_wallpaper(2)) is None
    # a screenshot: its title bar and the flat canvas below the photo are bands, and trimming them never cuts
    # into the photo (pasted at y = 120 of 900, sidebar text on the left)
    picture = photo("b0587")
    box = banded_box(screenshot(picture))
    assert box is not None
    shown = (picture.height * (0.3 * 1440 * 900 / (picture.width * picture.height)) ** 0.5) / 900
    assert box[1] <= 120 / 900 and box[3] >= 120 / 900 + shown - 0.01  # less one analysis line beyond a band


def test_a_flat_picture_is_detected_again_closer_and_its_crop_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """b0573 (a smooth picture) gives SIFT 10 keypoints at its usual contrast threshold: too few to confirm its
    own crop. Detected again at a lower threshold it has hundreds, and the crop is confirmed. (Keypoints alone:
    the dense alignment of smooth pictures would confirm it too, tests/vision/test_smooth_alignment.py.)"""
    import app.vision.local_features as verify_module

    image = photo("b0573")
    crop = cropped(image, 0.8)

    def outcome() -> Verified:
        base = features(grey(image))
        return verify(QueryFeatures(crop), base, VerifyPolicy(smooth_max_keypoints=0)).outcome

    assert len(features(grey(image)).points) >= verify_module.FEW_KEYPOINTS
    assert outcome() is Verified.CONFIRMED
    monkeypatch.setattr(verify_module, "FEW_KEYPOINTS", 0)  # the control: the usual threshold alone
    assert len(features(grey(image)).points) < 100
    assert outcome() is not Verified.CONFIRMED


def test_a_sliver_of_a_picture_is_compared_without_failing() -> None:
    """A banner whose sketch is under one cell high (the padded benchmark met one): nothing to compare, no error."""
    banner = photo("b0575").resize((768, 40))
    found = features(grey(banner))
    looks = compare_aligned(found, found, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert (looks.compared, looks.disagreement) == (0, 1.0)
    assert verify(QueryFeatures(banner), found, VerifyPolicy()).outcome is not Verified.CONFIRMED


def test_a_strip_of_a_picture_is_not_confirmed_as_its_copy_but_a_protocol_crop_is() -> None:
    """A portrait strip of a landscape picture (under a third of it, as the dev distractor b0536 is of b0537)
    shares every inlier with it, yet it is a piece, not a copy: at most review, whatever the inliers' spread
    (here the coverage floor is lowered so that the inliers alone would confirm it). A crop that keeps 70 % of
    each side is a copy."""
    picture = photo("b0587")
    width, height = picture.size
    base = features(grey(picture))
    strip = QueryFeatures(picture.crop((round(width * 0.35), 0, round(width * 0.65), height)))
    lenient = replace(VerifyPolicy(), min_base_coverage=0.1)
    assert verify(strip, base, replace(lenient, min_overlap=0.0)).outcome is Verified.CONFIRMED
    piece = verify(strip, base, lenient)
    assert piece.overlap < lenient.min_overlap and piece.outcome is Verified.AMBIGUOUS
    copy = verify(QueryFeatures(cropped(picture, 0.7)), base, VerifyPolicy())
    assert copy.outcome is Verified.CONFIRMED and copy.overlap >= 0.4


@pytest.mark.parametrize("base_id", ["b0587", "b0272"])
def test_a_copy_seen_at_a_tilt_is_confirmed_by_a_perspective_alignment(base_id: str) -> None:
    """Under a similarity a keystoned copy lines up on one band only (few inliers' coverage, the edges disagree);
    a homography fitted on the same matches lines it up everywhere."""
    base = features(grey(photo(base_id)))
    query = QueryFeatures(keystoned(photo(base_id), 0.15))
    assert verify(query, base, replace(VerifyPolicy(), perspective=False)).outcome is Verified.AMBIGUOUS
    tilted = verify(query, base, VerifyPolicy())
    assert tilted.outcome is Verified.CONFIRMED and tilted.disagreement < 0.1 and tilted.base_coverage > 0.5


def test_a_copy_whose_inliers_crowd_on_one_detail_is_confirmed_when_the_whole_picture_agrees() -> None:
    """b0348's keypoints sit on one small detail (its inliers cover 2 % of it); stickers over the rest make too
    many cells differ for the aligned route. The inliers are many and the aligned query covers all of the base and
    agrees with it nearly everywhere else: a copy (extra's sticker family, one fixed draw). On fine-scale features
    (the second verification's): the halved detection's keypoints spread wider and confirm it outright."""
    picture = photo("b0348")
    stickered, _ = t_sticker(picture, random.Random("b0348:0"))
    assert verify(QueryFeatures(stickered), features(grey(picture)), VerifyPolicy()).outcome is Verified.CONFIRMED
    base = features(grey(picture), fine=True)
    query = QueryFeatures(stickered, fine=True)
    without = verify(query, base, replace(VerifyPolicy(), supported_min_inliers=10**6))
    assert without.outcome is Verified.AMBIGUOUS
    assert without.base_coverage < VerifyPolicy().min_base_coverage
    assert without.disagreement > VerifyPolicy().aligned_max_disagreement
    found = verify(query, base, VerifyPolicy())
    assert found.outcome is Verified.CONFIRMED
    assert found.inliers >= VerifyPolicy().supported_min_inliers and found.overlap >= 0.9
