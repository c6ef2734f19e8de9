"""Every relative link in README.md, docs/ and benchmarks/README.md resolves: the file exists and
an `#anchor` names a heading of the page it points to (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted(ROOT.glob("docs/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _unfenced(text: str) -> list[str]:
    """The lines outside code fences."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's id of a heading: lower case, punctuation but `-` and `_` dropped, spaces `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _unfenced(page.read_text()):
        if m := re.match(r"^#{1,6}\s+(.*?)\s*#*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    prose = "\n".join(_unfenced(page.read_text()))
    for target in LINK.findall(re.sub(r"`[^`\n]*`", "", prose)):  # a link in code is not one
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, fragment = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    return broken


def test_slug_follows_github() -> None:
    assert slug("Random transforms in `__getitem__`") == "random-transforms-in-__getitem__"
    assert slug("The step helper's overhead (`python x.py --runs 5`)") == (
        "the-step-helpers-overhead-python-xpy---runs-5"
    )


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A `b` (c)\n[ok](#a-b-c) [no](#nope) [gone](gone.md) [web](https://x.y)\n")
    assert broken_links(page) == ["#nope (no such heading)", "gone.md (no such file)"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []
