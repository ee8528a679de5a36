"""A scan's report on disk: `groups.json`, `groups.csv` (one line per image of a group, and per review pair) and
`index.html`, a contact sheet that opens from disk: each original beside its copies, the review pairs apart."""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Callable
from pathlib import Path

from app.ops.scan import Finding, ScanReport

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
h2 { margin-top: 2rem; } .group { display: flex; gap: .75rem; align-items: flex-start; margin: .75rem 0;
padding: .5rem; border: 1px solid #ddd; border-radius: 6px; overflow-x: auto; }
figure { margin: 0; width: 180px; } figure.original { outline: 3px solid #2a7; }
img { max-width: 180px; max-height: 180px; display: block; background: #eee; }
figcaption { font-size: 12px; word-break: break-all; } .why { color: #666; }
"""


def write_report(report: ScanReport, out: Path, source_of: Callable[[str], str]) -> None:
    """`source_of(name)` is what an <img> shows for a name: a file: URI, or the URL itself."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "groups.json").write_text(json.dumps(report.as_dict(), indent=2))
    with (out / "groups.csv").open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["group", "role", "name", "matched", "verdict", "decided_by", "similarity", "phash_distance"])
        for number, (original, copies) in enumerate(report.groups.items(), start=1):
            rows.writerow([number, "original", original, "", "", "", "", ""])
            for c in copies:
                rows.writerow([number, "copy", c.name, c.matched, c.verdict, c.decided_by, c.similarity,
                               c.phash_distance])  # fmt: skip
        for r in report.review:
            rows.writerow(["", "review", r.name, r.matched, r.verdict, r.decided_by, r.similarity, r.phash_distance])
    (out / "index.html").write_text(_html(report, source_of))


def _figure(name: str, source_of: Callable[[str], str], css: str = "", why: str = "") -> str:
    caption = html.escape(name) + (f'<br><span class="why">{html.escape(why)}</span>' if why else "")
    return (
        f'<figure class="{css}"><img loading="lazy" src="{html.escape(source_of(name), quote=True)}" alt="">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _evidence(finding: Finding) -> str:
    parts = [finding.decided_by]
    if finding.similarity is not None:
        parts.append(f"cosine {finding.similarity:.3f}")
    if finding.phash_distance is not None:
        parts.append(f"pHash {finding.phash_distance}")
    return ", ".join(parts)


def _html(report: ScanReport, source_of: Callable[[str], str]) -> str:
    copies = sum(len(c) for c in report.groups.values())
    body = [
        f"<h1>Scan: {report.scanned} images, {len(report.groups)} groups of copies ({copies} copies), "
        f"{len(report.review)} pairs to review, {len(report.failed)} unreadable</h1>",
        "<h2>Duplicates: each original (framed) beside its copies</h2>",
    ]
    for original, found in report.groups.items():
        figures = [_figure(original, source_of, "original", "original")]
        figures += [_figure(c.name, source_of, "", _evidence(c)) for c in found]
        body.append(f'<div class="group">{"".join(figures)}</div>')
    body.append("<h2>For a person to look at (the review band)</h2>")
    for r in report.review:
        pair = _figure(r.matched, source_of, "original", "earlier") + _figure(r.name, source_of, "", _evidence(r))
        body.append(f'<div class="group">{pair}</div>')
    if report.failed:
        body.append("<h2>Not readable</h2><ul>")
        body += [f"<li>{html.escape(name)}: {html.escape(error)}</li>" for name, error in report.failed]
        body.append("</ul>")
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>imgdedup scan</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
