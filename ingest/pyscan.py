"""Python files mapped by a line scanner: tree-sitter's `FileMap`, at several times its speed.

Why: tree-sitter parses Python at ~5 MB/s on one core, so a large repository (80 MB of
Python) cannot be parsed in the seconds a cold `nsa ingest` may take. Python marks every
definition with `def`/`class` at the start of a line and closes it by indentation, so
regular expressions find the same definitions, signatures, docstrings and line ranges.
References are every word of the file, and each dotted module it imports: finding only
calls and annotations by pattern cost more than all the rest, and the ranker reads
references only for names some file defines, where a use of any kind is a link
(retrieval on bench/retrieval_questions.json rose with it).
tests/test_ingest_pyscan.py checks the scanner against `ast` and the tree-sitter mapper.

Known gaps (rare): a `def` line inside a triple-quoted string that the string finder
missed, and a statement continued at column zero inside a body, end a definition early.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter

from .codemap import (
    SIGNATURE_MAX_CHARS,
    Definition,
    FileMap,
    shorten_doc,
    with_parents,
)
from .terms import word_counts

SCANNER_VERSION = "pyscan-3"
"""Part of every cache key of a Python file: bump it when the scanner's output changes."""
# a literal first lets the regex engine skip ahead fast; the line prefix is checked after
_DEF = re.compile(r"(def|class)[ \t]+([A-Za-z_]\w*)")
# the header ends at the colon after the parameters (and return annotation) or class bases
_DEF_TAIL = re.compile(r"[ \t]*(?:\[[^\]\n]*\])?[ \t]*\([\s\S]*?\)[ \t]*(?:->[^:]*)?:")
_CLASS_TAIL = re.compile(r"[ \t]*(?:\[[^\]\n]*\])?[ \t]*(?:\([\s\S]*?\))?[ \t]*:")
HEADER_MAX_CHARS = 4000
"""A header longer than this is not searched for its colon (it is then the first line)."""
_QUOTE = r"[rRuU]?(\"\"\"|'''|\"|')"
# comment lines between the header and the docstring do not hide it (as in tree-sitter)
_DOCSTRING = re.compile(rf"(?:[ \t]*(?:#[^\n]*)?\n)+[ \t]*{_QUOTE}|[ \t]*{_QUOTE}")
_SPACES = re.compile(r"\s+")
# dotted modules imported (`from a.b import c`, `import a.b`) link to a module file; each
# pattern opens with a literal, which the regex engine finds at C speed
_FROM_DOTTED = re.compile(r"from[ \t]+([A-Za-z_]\w*(?:\.\w+)+)[ \t]+import")
_IMPORT_DOTTED = re.compile(r"import[ \t]+([A-Za-z_]\w*(?:\.\w+)+)")


@functools.cache
def _dedent(indent: int) -> re.Pattern[str]:
    """A code line indented at most `indent` (not a comment, not a closing bracket)."""
    return re.compile(rf"\n[ \t]{{0,{indent}}}[^\s#)\]}}]")


def map_python(text: str) -> FileMap:
    """`FileMap` of Python source `text`: the definitions `CodeMapper.map_file` finds (same
    lines, kinds, parents, docstrings); every word, and each dotted import, as references."""
    strings = _triple_quoted_spans(text)
    found: list[tuple[int, int, Definition]] = []
    counted, line = 0, 1  # definitions come in text order: count newlines as we go
    for match in _DEF.finditer(text):
        start = _statement_start(text, match.start())
        if start >= 0 and not _inside(strings, start):
            line += text.count("\n", counted, start)
            counted = start
            found.append(_definition(text, match, start, line, strings))
    definitions = with_parents(found)
    words = word_counts(text)
    imported = Counter(_FROM_DOTTED.findall(text)) + Counter(_IMPORT_DOTTED.findall(text))
    for module, count in imported.items():
        words[module] = words.get(module, 0) + count
    return FileMap(definitions, words, words)


def _triple_quoted_spans(text: str) -> list[int]:
    """Flat [open, close, open, close, ...] offsets of triple-quoted strings.

    A triple quote after `#` or inside a one-line string on its line is not an opener.
    Two `find`s (C speed) look for the next quote of each kind; each is searched again
    only once passed, so the text is read once for each kind."""
    spans: list[int] = []
    position = 0
    found = {quote: text.find(quote) for quote in ('"""', "'''")}
    while True:
        for quote, at in found.items():
            if 0 <= at < position:
                found[quote] = text.find(quote, position)
        waiting = [(at, quote) for quote, at in found.items() if at >= 0]
        if not waiting:
            return spans
        start, quote = min(waiting)
        line_start = text.rfind("\n", 0, start) + 1
        prefix = text[line_start:start]
        if "#" in prefix or prefix.count('"') % 2 or prefix.count("'") % 2:
            position = start + 3
            continue
        close = _closing(text, quote, start + 3)
        spans += [start, close]
        position = close


def _closing(text: str, quote: str, position: int) -> int:
    """Offset just past the triple quote that closes a string opened before `position`."""
    while True:
        found = text.find(quote, position)
        if found < 0:
            return len(text)
        before = found
        while before > position and text[before - 1] == "\\":
            before -= 1
        if (found - before) % 2 == 0:  # an odd run of backslashes escapes the quote
            return found + 3
        position = found + 1


def _inside(spans: list[int], offset: int) -> bool:
    return bisect.bisect_right(spans, offset) % 2 == 1


def _statement_start(text: str, keyword_at: int) -> int:
    """Where the `def`/`class` statement starts (`async` included), or -1 when the keyword
    is not the first word of its line (`x.def`, `# def`, `undef f`)."""
    line_start = text.rfind("\n", 0, keyword_at) + 1
    prefix = text[line_start:keyword_at]
    words = prefix.split()
    if words not in ([], ["async"]) or (words and not prefix[-1].isspace()):
        return -1
    return line_start + len(prefix) - len(prefix.lstrip())


def _definition(
    text: str, match: re.Match[str], start: int, line: int, strings: list[int]
) -> tuple[int, int, Definition]:
    """One definition starting at offset `start` on `line`, and its offsets (start, last
    code character)."""
    kind = "class" if match.group(1) == "class" else "function"
    tail = (_CLASS_TAIL if kind == "class" else _DEF_TAIL).match(
        text, match.end(), min(len(text), match.end() + HEADER_MAX_CHARS)
    )
    line_end = text.find("\n", match.end())
    header_end = tail.end() if tail else (line_end if line_end >= 0 else len(text))
    head = text[start:header_end]
    if "\n" in head or "  " in head or "\t" in head:  # most headers are one clean line
        head = _SPACES.sub(" ", head)
    head = head.strip()
    if len(head) > SIGNATURE_MAX_CHARS:
        head = head[: SIGNATURE_MAX_CHARS - 1] + "…"
    indent = text[text.rfind("\n", 0, start) + 1 : start].expandtabs()
    end = _body_end(text, header_end, len(indent), strings)
    doc = _docstring(text, header_end) if tail else ""
    last = line + text.count("\n", start, max(start, end))
    definition = Definition(match.group(2), kind, head, line, last, doc)
    return start, end, definition


def _body_end(text: str, header_end: int, indent: int, strings: list[int]) -> int:
    """Offset of the last code character of the body: before the next line indented at most
    like the `def`, trailing blank and comment lines left out."""
    pattern = _dedent(indent)
    position = header_end
    while True:
        found = pattern.search(text, position)
        if found is None:
            stop = len(text)
            break
        if not _inside(strings, found.end() - 1):
            stop = found.start()
            break
        position = found.end()
    return _last_code(text, header_end, stop)


def _last_code(text: str, low: int, stop: int) -> int:
    """Offset of the last non-blank character before `stop` that is not in a comment line."""
    end = stop
    while end > low:
        line_start = max(text.rfind("\n", low, end - 1) + 1, low)
        line = text[line_start:end]
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return line_start + len(line.rstrip()) - 1
        end = line_start
    return low


def _docstring(text: str, header_end: int) -> str:
    """The string that opens the body right after the header's colon, shortened."""
    match = _DOCSTRING.match(text, header_end)
    if match is None:
        return ""
    quote = match.group(1) or match.group(2)
    start = match.end()
    close = text.find(quote, start)
    if close < 0 or (len(quote) == 1 and "\n" in text[start:close]):
        return ""
    return shorten_doc(text[start:close])
