"""The README and docs/*.md hold together: every relative link leads somewhere, every snippet is marked once.

Links are checked the way GitHub renders them: a relative path must name an existing file, and an
`#anchor` must be the slug of a heading in that file (lowercase, punctuation removed, spaces to '-',
a repeated heading gets -1, -2 ...). Headings and links inside fenced code blocks do not count.
The snippets themselves run in tests/e2e/test_readme_snippets.py; here only their markers are counted.
"""

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.snippets import EXPECTED, MARKER, doc_files

DOCS = doc_files()

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of everything outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for _, line in prose_lines(path):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            found.add(f"{base}-{seen[base]}" if seen[base] else base)
            seen[base] += 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link; inline code is not a link."""
    found = []
    for number, line in prose_lines(path):
        for target in LINK.findall(INLINE_CODE.sub("code", line)):
            if not EXTERNAL.match(target):
                found.append((number, target))
    return found


def test_the_slugs_follow_githubs_rules():
    assert slug("Admin CLI: `webex-broker`") == "admin-cli-webex-broker"
    assert slug("Update, delete, re-create") == "update-delete-re-create"
    assert slug("`make run` options") == "make-run-options"
    assert slug("On-demand refresh after a 401") == "on-demand-refresh-after-a-401"
    assert slug("See [the docs](docs/x.md) now") == "see-the-docs-now"


def test_headings_in_code_blocks_and_repeated_headings(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n```sh\n# not a heading\n```\n\n## Notes\n\n   ```\n## Indented fence\n   ```\n")
    assert anchors(page) == {"notes", "notes-1"}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_a_heading(path):
    broken = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        file = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not file.exists():
            broken.append(f"{where}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{where}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_readme_links_every_doc():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in links(ROOT / "README.md")}
    unlinked = [p.relative_to(ROOT) for p in DOCS[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_every_expected_snippet_is_marked_exactly_once():
    marked = Counter(name for path in DOCS for name in MARKER.findall(path.read_text()))
    assert {name: marked[name] for name in EXPECTED} == dict.fromkeys(EXPECTED, 1)
    assert set(marked) == set(EXPECTED), f"marked but not expected: {set(marked) - set(EXPECTED)}"
