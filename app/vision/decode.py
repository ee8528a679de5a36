"""Decoding and hashing of image bytes: CPU work, run on a bounded thread pool by the caller."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from app.domain.errors import InvalidImage, TooManyPixels
from app.vision.phash import phash64


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded once: RGB pixels (possibly reduced for speed), its hashes and true size."""

    pixels: Image.Image
    sha256: str
    phash: int
    width: int
    height: int
    url: str | None


# Magic numbers of the formats we accept; bytes are sniffed, headers are never trusted.
_SIGNATURES: tuple[tuple[bytes, int], ...] = (
    (b"\xff\xd8\xff", 0),  # JPEG
    (b"\x89PNG\r\n\x1a\n", 0),
    (b"GIF87a", 0),
    (b"GIF89a", 0),
    (b"BM", 0),
)
# The only Pillow plugins that ever see the bytes: a sniffed header cannot steer them to any other decoder
# (TIFF, IM, SPIDER, PCD, TGA...), and TIFF's many codecs are not worth their unbounded costs.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# Decoded bytes per pixel by mode (what a full decode allocates); RGB conversion adds 3 more.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}
# What decoding one image may allocate, for formats that cannot decode at a reduced scale (JPEG can: it is
# decoded at the size that is used, so its cost is bounded by the pixel limit alone).
MAX_DECODED_BYTES = 64 * 1024 * 1024
# Largest side kept after decoding; enough for the embedder and the hashes, and it bounds memory.
WORKING_SIDE = 512


def looks_like_image(head: bytes) -> bool:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return any(head[offset : offset + len(magic)] == magic for magic, offset in _SIGNATURES)


def decode_image(
    data: bytes, max_pixels: int, url: str | None = None, max_decoded_bytes: int = MAX_DECODED_BYTES
) -> DecodedImage:
    if not looks_like_image(data[:16]):
        raise InvalidImage("the content is not an image (JPEG, PNG, GIF, WebP or BMP)")
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
            if image.width * image.height > max_pixels:
                raise TooManyPixels(
                    f"the image has {image.width}x{image.height} pixels; at most {max_pixels} are accepted"
                )
            cost = _decoding_cost(image)
            if cost > max_decoded_bytes:
                raise TooManyPixels(
                    f"decoding the {image.format} image ({image.width}x{image.height}, {image.mode}) would take "
                    f"{cost // 2**20} MiB; at most {max_decoded_bytes // 2**20} MiB are spent on one image"
                )
            width, height = _oriented_size(image)
            image = _decode_upright(image, (WORKING_SIDE, WORKING_SIDE))
            image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BILINEAR)
    except TooManyPixels:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"the image could not be decoded: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise TooManyPixels(str(exc)) from exc
    return DecodedImage(pixels=image, sha256=sha256, phash=phash64(image), width=width, height=height, url=url)


def decode_region(data: bytes, box: tuple[float, float, float, float], side: int = WORKING_SIDE) -> Image.Image:
    """The part `box` (fractions of the oriented image) of an image already accepted by `decode_image`, decoded
    at the resolution that gives the part `side` pixels on its longest side where the image has them."""
    left, top, right, bottom = box
    image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
    width, height = _oriented_size(image)
    share = max(right - left, bottom - top, 1e-3)
    image = _decode_upright(image, (min(width, round(side / share)), min(height, round(side / share))))
    w, h = image.size
    part = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    part.thumbnail((side, side), Image.Resampling.BILINEAR)
    return part


def _decoding_cost(image: Image.Image) -> int:
    """Bytes a full decode and RGB conversion allocate; JPEG is decoded reduced (draft), so it costs little."""
    if image.format == "JPEG":
        return 0
    return image.width * image.height * (_BYTES_PER_PIXEL.get(image.mode, 4) + 3)


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied."""
    if image.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that swap width and height
        return image.height, image.width
    return image.width, image.height


def _decode_upright(image: Image.Image, at_least: tuple[int, int]) -> Image.Image:
    """Decode, upright and in RGB; JPEG lets libjpeg decode at a reduced scale no smaller than `at_least`, much
    cheaper than a full decode plus resize."""
    image.draft("RGB", at_least)
    ImageOps.exif_transpose(image, in_place=True)  # not a copy: this image is ours alone
    return _flatten_to_rgb(image)


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white for images with transparency, so a logo on alpha hashes like its JPEG copy."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
