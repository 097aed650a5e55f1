"""Where the docs' code snippets live and how they are marked: the end-to-end tier runs them, the unit
tier checks the docs mark each one once."""

import re
from pathlib import Path

from tests.support.paths import ROOT

# Every snippet the docs mark, and only these: renaming or removing one fails the snippet tests.
EXPECTED = ["read-token-boto3", "read-token-powertools", "webexpythonsdk", "refresh-on-401"]
MARKER = re.compile(r"^<!-- snippet: (\S+) -->$", re.MULTILINE)


def doc_files() -> list[Path]:
    """The files snippets may live in: the README and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
