"""Every relative link in the repository's Markdown leads somewhere: the file exists, and an
anchor names a heading of the page it points into (GitHub's heading ids). A newcomer follows
these links to find a rule, a config or a figure; a move that forgets one breaks this test."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: [text](target) and [text](target "title"); images too. Code spans are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / p for p in listed.split("\0") if p and not p.startswith("results/")]


def github_anchor(heading: str) -> str:
    """GitHub's id of a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = github_anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    out |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif not dest.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return problems


def test_the_anchor_rule_matches_githubs_on_this_repositorys_headings():
    assert github_anchor("From your own folder") == "from-your-own-folder"
    assert github_anchor("The paper run (GPU)") == "the-paper-run-gpu"
    assert github_anchor("`config.yaml`: what is checked") == "configyaml-what-is-checked"


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Title\n[ok](b.md#two) [gone](c.md) [bad](b.md#three) `[code](d.md)` [up](../x.md)\n"
    )
    (tmp_path / "b.md").write_text("# One\n## Two\n")
    (tmp_path.parent / "x.md").write_text("# X\n")
    assert broken_links(tmp_path / "a.md", root=tmp_path) == [
        "c.md: no such file",
        "b.md#three: no heading #three in b.md",
        "../x.md: outside the repository",
    ]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []
