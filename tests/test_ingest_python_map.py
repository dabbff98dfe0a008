"""The Python line scanner against `ast` (independent reference) and the tree-sitter mapper."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest

from nsa_assist.ingest.codemap import CodeMapper
from nsa_assist.ingest.languages import PYTHON
from nsa_assist.ingest.pyscan import map_python
from nsa_assist.ingest.terms import _PARTS, MIN_TERM_CHARS, STOPWORDS, stem, word_terms

STDLIB = Path(json.__file__).parent.parent
PACKAGES = ["json", "email", "asyncio", "concurrent", "importlib", "logging", "unittest"]


def _files(package: str) -> list[Path]:
    return sorted(STDLIB.joinpath(package).rglob("*.py"))


def _ast_definitions(text: str) -> list[tuple[str, int, int]]:
    return sorted(
        (node.name, node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_definitions_match_ast(package: str) -> None:
    """Every class and def `ast` sees, at the same first and last line, and nothing else."""
    for path in _files(package):
        text = path.read_text("utf-8")
        got = sorted((d.name, d.start, d.end) for d in map_python(text).definitions)
        assert got == _ast_definitions(text), path


@pytest.mark.parametrize("package", PACKAGES)
def test_docstrings_match_ast(package: str) -> None:
    for path in _files(package):
        text = path.read_text("utf-8")
        docs = {
            (node.name, node.lineno): ast.get_docstring(node, clean=False)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        }
        for definition in map_python(text).definitions:
            want = docs[(definition.name, definition.start)]
            assert bool(want and want.strip()) == bool(definition.doc), (path, definition.name)
            if definition.doc:
                assert definition.doc.split()[0] in want, (path, definition.name)


@pytest.mark.parametrize("package", ["json", "email", "asyncio"])
def test_matches_the_tree_sitter_mapper(package: str) -> None:
    """Same definitions, kinds, parents, lines and docstrings as tree-sitter; the same
    signature, except that tree-sitter also keeps comments between the header and body."""
    mapper = CodeMapper()
    for path in _files(package):
        text = path.read_text("utf-8")
        ours = map_python(text).definitions
        theirs = mapper.map_file(text, PYTHON).definitions
        assert len(ours) == len(theirs), path
        for a, b in zip(ours, theirs, strict=True):
            assert (a.name, a.kind, a.parent, a.start, a.end, a.doc) == (
                b.name,
                b.kind,
                b.parent,
                b.start,
                b.end,
                b.doc,
            ), path
            assert b.signature.startswith(a.signature.rstrip("…")), (path, a.name)


def test_tricky_source() -> None:
    text = (
        "import a.b.c\n"
        "from x.y import z\n"
        'DOC = """\n'
        "def not_a_function():\n"
        '"""\n'
        "class Outer(Base, metaclass=Meta):\n"
        "    '''Outer doc.'''\n"
        "    async def method(\n"
        "        self, x: int = f(1),\n"
        "    ) -> dict[str, int]:\n"
        "        # a comment first\n"
        '        """Method doc."""\n'
        "        return {'a': x}\n"
        "\n"
        "    # trailing comment\n"
        "\n"
        "def one_liner(): return 1\n"
        "x.def_y = 2  # class C: not a definition\n"
    )
    got = [(d.name, d.kind, d.parent, d.start, d.end, d.doc) for d in map_python(text).definitions]
    assert got == [
        ("Outer", "class", "", 6, 13, "Outer doc."),
        ("method", "method", "Outer", 8, 13, "Method doc."),
        ("one_liner", "function", "", 17, 17, ""),
    ]
    file_map = map_python(text)
    signatures = [d.signature for d in file_map.definitions]
    assert signatures[1] == "async def method( self, x: int = f(1), ) -> dict[str, int]:"
    assert file_map.references is file_map.words
    assert file_map.words["a.b.c"] == 1 and file_map.words["x.y"] == 1
    assert file_map.words["Base"] == 1 and file_map.words["x"] >= 2


def _regex_body_terms(text: str) -> Counter[str]:
    """The old definition of body terms: every part of the text by regex, stemmed."""
    counted: Counter[str] = Counter()
    for part in _PARTS.findall(text):
        lower = part.lower()
        if len(lower) >= MIN_TERM_CHARS and lower not in STOPWORDS and not lower.isdigit():
            counted[stem(lower)] += 1
    return counted


def test_words_split_into_the_same_terms_as_the_whole_text() -> None:
    """Splitting each counted word gives the terms a regex over the whole text gives."""
    for path in [*_files("email")[:20], STDLIB / "json" / "decoder.py"]:
        text = path.read_text("utf-8") + "\nnaïve_ünïcode 3rd x2y HTTPServer_v2\n"
        counted: Counter[str] = Counter()
        for word, count in map_python(text).words.items():
            if "." not in word:  # dotted imports are added on top of the words
                for term in word_terms(word):
                    counted[term] += count
        assert counted == _regex_body_terms(text), path
