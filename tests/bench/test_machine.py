"""The benchmark names the machine it ran on: images/s compare across reports only on alike machines."""

from pathlib import Path

from bench.machine import cpu_of, describe, measured_again, summary

EPYC_WITHOUT_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse4_1 sse4_2 avx fma avx2 sse4a
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse4_1 sse4_2 avx fma avx2 sse4a
"""

XEON_WITH_VNNI = """model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512_vnni
"""


def test_the_cpu_is_named_with_the_instruction_sets_that_change_the_kernels_speed() -> None:
    assert cpu_of(EPYC_WITHOUT_VNNI) == {"model": "AMD EPYC", "flags": ["avx2", "fma"]}
    assert cpu_of(XEON_WITH_VNNI) == {
        "model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        "flags": ["avx2", "fma", "avx512f", "avx512_vnni"],
    }
    assert cpu_of("") == {"model": "unknown", "flags": []}


def test_the_reference_timings_are_measured_on_this_machine(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    photos = []
    for n in range(4):
        image = Image.new("RGB", (640, 480), (20 * n, 90, 160))
        draw = ImageDraw.Draw(image)
        for k in range(40):  # texture, so that SIFT finds keypoints
            draw.ellipse((k * 15, (k * 37) % 440, k * 15 + 30, (k * 37) % 440 + 30), fill=(k * 6, 255 - k * 5, n * 40))
        image.save(tmp_path / f"{n}.jpg")
        photos.append(tmp_path / f"{n}.jpg")
    machine = describe(photos)
    assert machine["cores"] >= 1
    assert set(machine["reference_ms"]) == {"embed_int8", "sift_512", "python_loop"}
    assert all(ms > 0 for ms in machine["reference_ms"].values())
    assert summary(machine).startswith(f"machine: {machine['model']}, {machine['cores']} cores")
    # timed again after a run: each timing the lower of the two, both kept
    slowed = {**machine, "reference_ms": {name: ms * 1000 for name, ms in machine["reference_ms"].items()}}
    again = measured_again(slowed, photos)
    assert again["reference_ms_each"][0] == slowed["reference_ms"]
    assert again["reference_ms"] == again["reference_ms_each"][1]  # the second timing, far under the first
    slow = {**machine, "reference_ms": {name: 1e-6 for name in machine["reference_ms"]}}
    assert measured_again(slow, photos)["reference_ms"] == slow["reference_ms"]
