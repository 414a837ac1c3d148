#!/usr/bin/env python3
"""Fails on a broken relative link in README.md or docs/**/*.md.

    python3 scripts/check-doc-links.py [--root DIR]

Every Markdown link and image, `[text](target)` and `![alt](target)`, and
every reference definition, `[label]: target`, whose target is relative (no
scheme such as `https:` or `mailto:`, not `//host`) must name a file or
directory that exists, relative to the linking file (or to the repository
root when it starts with `/`) and inside the repository. A fragment must name
a heading of the target Markdown file (or of the linking file, for a bare
`#fragment`), slugged as GitHub does: the heading's text without its markup,
lowercased, every character but letters, digits, `_`, `-` and spaces dropped,
spaces turned into hyphens; a repeated slug gets `-1`, `-2`, ... An explicit
`<a name="...">` or `id="..."` counts too. Fragments of files that are not
Markdown (line anchors of source files) are not checked.

Links inside fenced code blocks and inline code spans are not links and are
skipped; so are headings inside fenced code blocks.

Prints each broken link as `file:line: target (reason)` and exits 1 if there
is any; otherwise prints a one-line summary and exits 0. Python 3 standard
library only.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
import urllib.parse
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent.parent

# An opening or closing code fence: three or more backticks or tildes.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# [text](target "title") and ![alt](target); the text may hold one level of
# nested brackets (an image inside a link), the target one level of parentheses.
INLINE_LINK = re.compile(
    r"(?<!\\)(!?)\[((?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*)\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[((?:[^\[\]\\]|\\.)+)\]:[ \t]*(<[^<>\n]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?\bname=[\"']([^\"']+)[\"']|\bid=[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def blank(text: str) -> str:
    """`text` with every character but newlines replaced by a space, so
    offsets and line numbers stay where they were."""
    return re.sub(r"[^\n]", " ", text)


def strip_fenced_code(lines: list[str]) -> tuple[list[str], list[bool]]:
    """The lines with fenced code blanked, and which lines were code (fences
    included). An unclosed fence runs to the end of the file, as in CommonMark."""
    out, in_code = [], []
    fence: str | None = None
    for line in lines:
        m = FENCE.match(line)
        if fence is None:
            # A backtick fence's info string may not contain backticks.
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                out.append(blank(line))
                in_code.append(True)
                continue
            out.append(line)
            in_code.append(False)
        else:
            closing = (m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)
                       and not m.group(2).strip())
            if closing:
                fence = None
            out.append(blank(line))
            in_code.append(True)
    return out, in_code


def strip_code_spans(text: str) -> str:
    """`text` with inline code spans blanked: a run of n backticks up to the
    next run of exactly n. A run without a match is literal text."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == "`":
            out.append(text[i:i + 2])
            i += 2
            continue
        if text[i] != "`":
            out.append(text[i])
            i += 1
            continue
        j = i
        while j < len(text) and text[j] == "`":
            j += 1
        run = j - i
        closing = re.compile(r"(?<!`)`{%d}(?!`)" % run).search(text, j)
        # A code span does not run across a blank line (paragraph end).
        if closing and "\n\n" not in text[j:closing.start()]:
            out.append(blank(text[i:closing.end()]))
            i = closing.end()
        else:
            out.append(text[i:j])
            i = j
    return "".join(out)


def heading_text_to_slug(text: str) -> str:
    """GitHub's anchor for a heading whose Markdown source is `text`."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)  # links, images
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\[[^\]]*\]", r"\1", text)  # reference links
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(?<![\w\\])_+|_+(?![\w])", "", text)  # _emphasis_ delimiters
    text = text.strip().lower()
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "-_ " or category[0] in "LNM":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


class Document:
    """A Markdown file: its anchors, and its text with code blanked."""

    def __init__(self, path: Path):
        self.path = path
        raw = path.read_text(encoding="utf-8")
        lines = raw.split("\n")
        code_free, in_code = strip_fenced_code(lines)
        self.text = strip_code_spans("\n".join(code_free))
        self.anchors = self._anchors(lines, in_code)

    @staticmethod
    def _anchors(lines: list[str], in_code: list[bool]) -> set[str]:
        anchors: set[str] = set()
        seen: dict[str, int] = {}

        def add(source: str) -> None:
            slug = heading_text_to_slug(source)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")

        for i, line in enumerate(lines):
            if in_code[i]:
                continue
            for m in HTML_ANCHOR.finditer(line):
                anchors.add(m.group(1) or m.group(2))
            m = ATX_HEADING.match(line)
            if m:
                add(m.group(2) or "")
                continue
            m = SETEXT_UNDERLINE.match(line)
            if m and i > 0 and not in_code[i - 1]:
                previous = lines[i - 1]
                if (previous.strip() and not ATX_HEADING.match(previous)
                        and not re.match(r"^ {0,3}([-*+>|]|\d+[.)])", previous)
                        and not SETEXT_UNDERLINE.match(previous)):
                    add(previous.strip())
        return anchors

    def links(self):
        """(line number, target) of every link, image and reference definition."""
        for m in INLINE_LINK.finditer(self.text):
            yield self.text.count("\n", 0, m.start(3)) + 1, m.group(3)
        for number, line in enumerate(self.text.split("\n"), start=1):
            m = REFERENCE_DEFINITION.match(line)
            if m:
                yield number, m.group(2)


def check(root: Path) -> int:
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    files += sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    documents: dict[Path, Document] = {}

    def document(path: Path) -> Document:
        if path not in documents:
            documents[path] = Document(path)
        return documents[path]

    broken, checked, anchors_checked = [], 0, 0
    for path in files:
        source = document(path)
        for line, raw_target in source.links():
            target = raw_target[1:-1] if raw_target.startswith("<") else raw_target
            target = re.sub(r"\\(.)", r"\1", target)
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            checked += 1
            where = f"{path.relative_to(root)}:{line}: {raw_target}"
            location, _, fragment = target.partition("#")
            location = urllib.parse.unquote(location.partition("?")[0])
            fragment = urllib.parse.unquote(fragment)
            if location:
                base = root if location.startswith("/") else path.parent
                resolved = (base / location.lstrip("/")).resolve()
                if resolved != root and root not in resolved.parents:
                    broken.append(f"{where} (outside the repository)")
                    continue
                if not resolved.exists():
                    broken.append(f"{where} (no such file or directory)")
                    continue
            else:
                resolved = path
            if not fragment:
                continue
            if resolved.is_dir() or resolved.suffix.lower() not in (".md", ".markdown"):
                continue
            anchors_checked += 1
            if fragment not in document(resolved).anchors:
                name = "this file" if resolved == path else resolved.relative_to(root)
                broken.append(f"{where} (no heading #{fragment} in {name})")

    for problem in broken:
        print(problem)
    if broken:
        print(f"check-doc-links: {len(broken)} broken of {checked} relative links "
              f"in {len(files)} files", file=sys.stderr)
        return 1
    print(f"check-doc-links: ok, {checked} relative links ({anchors_checked} with anchors) "
          f"in {len(files)} files resolve")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="the repository to check (default: this script's repository)")
    args = parser.parse_args()
    return check(args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
