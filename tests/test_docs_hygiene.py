"""The documentation speaks of this project only, and its links resolve.

What is scanned, and how strictly:

- README.md, docs/**/*.md, studies/**/*.yaml, spaces/**/*.yaml, examples/**, .ci/** and the
  Python sources under nasscale/ and benchmarks/ must be clean.

What counts as a reference to something outside the project:

- an issue number: ``issue 24``, ``issues 3``, ``issue #24``, or a bare ``#24`` / ``(#24)``;
- the issue tracker as a unit of work: ``the issue offered ...``, ``until the search issue
  lands``, ``the issue's target`` (``the [word] issue`` not followed by with / in / of / for /
  is / was / where / when / that / here, which are ordinary English: "a known issue with X");
- a path outside the repository: ``../shared``, ``shared/reference``, ``shared/DESIGN``,
  ``shared/notes``, an absolute ``/work/``, ``/home/`` or ``/Users/`` path, or the private
  ``ref-venv`` folder name (describe the reference environment generically instead).

Deliberately allowed:

- an issue or pull request of ANOTHER project cited as ``owner/repo#123`` or ``project#123``
  (``onnxruntime#20052``): the ``#`` follows a word character, which is a citation of a public
  source, not a reference to this project's tracker; so is a URL (``.../issues/123``);
- hex colours (``#1f77b4``; a digits-only colour such as ``'#000000'`` inside quotes),
  ``#`` comments and markdown headings (``# Title``: a space follows the ``#``), and HTML
  character references (``&#123;``).

Links: every relative markdown link in README.md and docs/ must name an existing file inside
the repository, and a ``#fragment`` must name a heading of the target page (GitHub's slugs).
Links inside fenced code blocks and inline code are not links.

FLOPs: every page of README.md and docs/ that speaks of FLOPs states the convention
("one multiply-accumulate = one FLOP"), so a number is never read without it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+\b", re.IGNORECASE)
BARE_HASH_NUMBER = re.compile(r"(?<![\w/&#\"'])#\d+\b(?![0-9a-fA-F])")
TRACKER_PHRASE = re.compile(
    r"\b(?:the|this|that|our)\s+(?:[a-z]+\s+)?issue(?:'s)?\b"
    r"(?!\s+(?:with|in|of|for|is|was|where|when|that|here)\b)",
    re.IGNORECASE,
)
OUTSIDE_PATH = re.compile(
    r"\.\./shared\b"
    r"|\bshared/(?:reference|DESIGN|notes)\b"
    r"|(?<![\w.~/-])/(?:work|home|Users)/"
    r"|\bref-venv\b"
)
PATTERNS = {
    "issue number": ISSUE_NUMBER,
    "bare #number": BARE_HASH_NUMBER,
    "issue tracker": TRACKER_PHRASE,
    "path outside the repository": OUTSIDE_PATH,
}


def _files(*globs: str) -> list[Path]:
    out: set[Path] = set()
    for pattern in globs:
        out.update(p for p in ROOT.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)
    return sorted(out)


def doc_files() -> list[Path]:
    return _files("README.md", "docs/**/*.md", "studies/**/*.yaml", "spaces/search/*.yaml",
                  "examples/**/*", ".ci/**/*")


def arch_files() -> list[Path]:
    return _files("spaces/archs/*.yaml")


def code_files() -> list[Path]:
    return _files("nasscale/**/*.py", "benchmarks/**/*.py")


def markdown_files() -> list[Path]:
    return _files("README.md", "docs/**/*.md")


def hits(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file: nothing to read
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in PATTERNS.items():
                for m in pattern.finditer(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {m.group(0)!r} in "
                                 f"{line.strip()[:120]!r}")
    return found


# --- the patterns themselves -------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "fixed in issue 24", "see issue #24", "(issues 3 and 4)", "as in #24", "(#12)",
    "The issue offered pad or error.", "until the search issue lands", "the issue's target",
    "the table of the latency issue.", "see ../shared/DESIGN.md", "shared/reference/published.md",
    "python3 -m venv ../ref-venv", "/work/main/README.md", "open /home/me/x",
])
def test_patterns_flag_references_outside_the_project(text):
    assert any(p.search(text) for p in PATTERNS.values()), text


@pytest.mark.parametrize("text", [
    "color: #1f77b4", "colour '#000000'", "# a heading", "x = 1  # 3 rounds",
    "onnxruntime#20052", "pytorch/pytorch#12345", "https://github.com/o/r/issues/12",
    "a known issue with ONNX Runtime", "&#123;", "data: ../my_photos", "runs/quickstart/",
    "docs/guide/latency.md#the-latency-table", "one shared key and value", "https://x.org/work/a",
])
def test_patterns_allow_legitimate_text(text):
    assert not any(p.search(text) for p in PATTERNS.values()), text


# --- the scans -----------------------------------------------------------------------------------

def test_docs_studies_spaces_examples_and_ci_speak_of_the_project_only():
    found = hits(doc_files())
    assert not found, "references outside the project:\n" + "\n".join(found)


def test_published_network_files_speak_of_the_project_only():
    found = hits(arch_files())
    assert not found, "references outside the project:\n" + "\n".join(found)


def test_python_sources_speak_of_the_project_only():
    found = hits(code_files())
    assert not found, "references outside the project:\n" + "\n".join(found)


# --- links ---------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    out = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        out.append(target)
    return out


def test_markdown_files_are_found():
    names = {str(p.relative_to(ROOT)) for p in markdown_files()}
    assert "README.md" in names and "docs/README.md" in names


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_markdown_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_that_speak_of_flops_state_the_convention(page):
    text = page.read_text(encoding="utf-8")
    if "FLOP" in text:
        flat = re.sub(r"\s+", " ", text).lower()
        assert "one multiply-accumulate = one flop" in flat, (
            f"{page.relative_to(ROOT)} speaks of FLOPs without the convention statement")


def test_readme_keeps_the_test_command_that_ci_runs():
    command = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 '
               '-e ".[test]" && python -m pytest')
    assert command in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
