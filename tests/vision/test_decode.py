from __future__ import annotations

import io

import pytest
from PIL import Image

from app.db.codecs import to_signed64, to_unsigned64
from app.domain.errors import InvalidImage, TooManyPixels
from app.vision.decode import decode_image
from app.vision.phash import phash64
from testkit.images import jpeg, photo, png


def test_decode_applies_exif_orientation() -> None:
    image = Image.new("RGB", (300, 100), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    decoded = decode_image(out.getvalue(), max_pixels=10**7)
    assert (decoded.width, decoded.height) == (100, 300)


def test_decode_flattens_transparency_and_reduces_large_images() -> None:
    image = Image.new("RGBA", (2000, 1000), (0, 0, 0, 0))
    decoded = decode_image(png(image), max_pixels=10**7)
    assert decoded.pixels.mode == "RGB"
    assert max(decoded.pixels.size) <= 512
    assert decoded.pixels.getpixel((5, 5)) == (255, 255, 255)
    assert (decoded.width, decoded.height) == (2000, 1000)


def test_decode_rejects_non_images_truncated_and_bombs() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"%PDF-1.4 not an image", max_pixels=10**7)
    with pytest.raises(InvalidImage):
        decode_image(jpeg(photo("b0575"))[:2000], max_pixels=10**7)
    with pytest.raises(TooManyPixels):
        decode_image(png(Image.new("L", (5000, 5000))), max_pixels=10**7)


def test_phash_is_stable_under_recompression_and_roundtrips_signed() -> None:
    original = decode_image(jpeg(photo("b0575")), 10**7)
    recompressed = decode_image(jpeg(photo("b0575"), quality=40), 10**7)
    assert bin(original.phash ^ recompressed.phash).count("1") <= 5
    assert phash64(photo("b0575")) == phash64(photo("b0575"))
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert to_unsigned64(to_signed64(value)) == value
