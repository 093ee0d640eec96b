"""The documentation stays in step with the project: README.md and docs/*.md.

- every relative link ``](path)`` and ``](path#anchor)`` points to a file of the project, and an
  anchor to a heading of that file (GitHub's slugs);
- README.md is short (at most :data:`README_MAX_LINES` lines), starts with its quick start and
  shows the headline results early;
- docs/cli.md names every command of ``python -m helpers`` and, in that command's section, every
  one of its options, as ``build_parser`` defines them;
- the documents are about the course, not about how it was developed.

Fast: no TensorFlow (``helpers.tools.cli`` imports it only when a command runs).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from helpers.tools.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
README_MAX_LINES = 250
HEADLINE_WITHIN = 80  # lines: the results section must start within them
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks (code is not rendered as links)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _strip_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation but '-' and '_'
    dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose_lines(path):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    links = []
    for line in _prose_lines(path):
        for target in _LINK.findall(_strip_code_spans(line)):
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # empty, or a URL (http:, https:, mailto:)
            links.append(target)
    return links


def test_slug_follows_github():
    assert slug("Quick start") == "quick-start"
    assert slug("Speed (`bench speed`)") == "speed-bench-speed"
    assert slug("Grading students' models (`grade`)") == "grading-students-models-grade"
    assert slug("Quality: to be re-measured") == "quality-to-be-re-measured"
    assert slug("The `full` profile") == "the-full-profile"
    assert slug("snake_case and 30 %") == "snake_case-and-30-"


def test_the_documents_exist():
    names = {p.name for p in DOCS}
    for name in ("benchmarks.md", "cli.md", "teaching.md", "gpu.md", "development.md"):
        assert name in names, f"docs/{name} is missing"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for link in relative_links(doc):
        target, _, anchor = link.partition("#")
        file = (doc.parent / target).resolve() if target else doc
        if not file.exists():
            broken.append(
                f"{link}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}"
            )
            continue
        if anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link}: no heading with the anchor #{anchor} in {file.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_readme_is_short_and_starts_with_the_quick_start():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert "## Quick start" in text
    assert "pytest" in text and "python -m helpers run --profile quick" in text
    heading = next((i for i, line in enumerate(lines) if line.startswith("## Results")), None)
    assert heading is not None and heading < HEADLINE_WITHIN, "the results come too late"
    assert "figures/03_reconstructions.png" in "\n".join(lines[:HEADLINE_WITHIN])


def test_readme_has_no_dated_diary():
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", README.read_text(encoding="utf-8"))
    assert not dates, f"README.md: dated entries {dates}; measurements go to docs/benchmarks.md"


_DEVELOPMENT_WORDING = re.compile(
    r"\bissues?\s*#?\d+|#\d+\b|\btasks?\b|\bsessions?\b|\bpull requests?\b", re.IGNORECASE
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_history(doc):
    hits = [
        f"line {i}: {m.group(0)!r}"
        for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        for m in _DEVELOPMENT_WORDING.finditer(line)
    ]
    assert not hits, f"{doc.name} talks about how the project was developed: " + "; ".join(hits)


def _commands(parser, prefix=()):
    """``(("run",), parser), (("bench", "speed"), parser), ...``: every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def _sections(path: Path) -> dict[str, str]:
    """The text under each heading ``## `command` ``/``### `command sub` `` of docs/cli.md, up to
    the next heading of the same or a higher level."""
    sections, current, level = {}, None, 0
    for line in _prose_lines(path):
        m = _HEADING.match(line)
        if m:
            name = re.fullmatch(r"`([^`]+)`", m.group(2).strip())
            if name or len(m.group(1)) <= level:
                current, level = (name.group(1), len(m.group(1))) if name else (None, 0)
                if current:
                    sections[current] = ""
                continue
        if current:
            sections[current] += line + "\n"
    return sections


def test_cli_doc_lists_every_command_and_option():
    sections = _sections(CLI_DOC)
    missing = []
    for path, parser in _commands(build_parser()):
        name = " ".join(path)
        if name not in sections:
            missing.append(f"the command `{name}` (a heading `{name}`)")
            continue
        for action in parser._actions:
            for flag in action.option_strings:
                if not flag.startswith("--") or flag == "--help":
                    continue
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", sections[name]):
                    missing.append(f"{flag} in the section of `{name}`")
    assert not missing, "docs/cli.md lacks " + "; ".join(missing)


def test_cli_doc_has_no_stale_command():
    commands = {" ".join(path) for path, _ in _commands(build_parser())}
    stale = set(_sections(CLI_DOC)) - commands
    assert not stale, f"docs/cli.md documents commands that do not exist: {sorted(stale)}"
