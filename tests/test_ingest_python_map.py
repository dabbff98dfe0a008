"""Python through the tree-sitter mapper, checked against `ast` (an independent reference)."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest

from nsa_assist.ingest.codemap import CodeMapper, FileMap
from nsa_assist.ingest.languages import PYTHON
from nsa_assist.ingest.terms import _PARTS, MIN_TERM_CHARS, STOPWORDS, stem, word_terms

STDLIB = Path(json.__file__).parent.parent
PACKAGES = ["json", "email", "asyncio", "concurrent", "importlib", "logging", "unittest", "re"]
DEFINITION_NODES = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _files(package: str) -> list[Path]:
    return sorted(STDLIB.joinpath(package).rglob("*.py"))


def _map(text: str) -> FileMap:
    return CodeMapper().map_file(text, PYTHON)


def _ast_definitions(tree: ast.AST, parent: str = "") -> list[tuple[str, str, str, int, int]]:
    """(name, kind, parent, first line, last line) of every class and def. As in the mapper,
    the parent is the nearest enclosing class, and a def with one is a method."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, DEFINITION_NODES):
            is_class = isinstance(node, ast.ClassDef)
            kind = "class" if is_class else "method" if parent else "function"
            end = node.end_lineno or node.lineno
            found.append((node.name, kind, parent, node.lineno, end))
            found += _ast_definitions(node, node.name if is_class else parent)
        else:
            found += _ast_definitions(node, parent)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_definitions_match_ast(package: str) -> None:
    """Every class and def `ast` sees (async and decorated ones too), with the same kind,
    parent, first and last line, and nothing else."""
    for path in _files(package):
        text = path.read_text("utf-8")
        got = [(d.name, d.kind, d.parent, d.start, d.end) for d in _map(text).definitions]
        assert sorted(got) == sorted(_ast_definitions(ast.parse(text))), path


@pytest.mark.parametrize("package", PACKAGES)
def test_docstrings_match_ast(package: str) -> None:
    for path in _files(package):
        text = path.read_text("utf-8")
        docs = {
            (node.name, node.lineno): ast.get_docstring(node, clean=False)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, DEFINITION_NODES)
        }
        for definition in _map(text).definitions:
            want = docs[(definition.name, definition.start)]
            assert bool(want and want.strip()) == bool(definition.doc), (path, definition.name)
            if definition.doc:
                assert definition.doc.split()[0] in want, (path, definition.name)


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
        "@decorator(arg)\n"
        "@other\n"
        "def decorated():  # why\n"
        "    'one-quote doc'\n"
    )
    file_map = _map(text)
    got = [(d.name, d.kind, d.parent, d.start, d.end, d.doc) for d in file_map.definitions]
    assert got == [
        ("Outer", "class", "", 6, 13, "Outer doc."),
        ("method", "method", "Outer", 8, 13, "Method doc."),
        ("one_liner", "function", "", 17, 17, ""),
        ("decorated", "function", "", 21, 22, "one-quote doc"),
    ]
    signatures = [d.signature for d in file_map.definitions]
    assert signatures[1] == "async def method( self, x: int = f(1), ) -> dict[str, int]:"
    assert signatures[3] == "def decorated():"  # the comment after the colon is left out
    references = file_map.references
    assert references["a.b.c"] == 1 and references["x.y"] == 1  # dotted imports link modules
    assert references["Base"] == 1 and references["x"] == 4  # every identifier in code
    assert {"decorator", "other", "f", "def_y", "Meta"} <= references.keys()
    assert "DOC" in references and "not_a_function" not in references  # not in strings


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
        for word, count in _map(text).words.items():
            for term in word_terms(word):
                counted[term] += count
        assert counted == _regex_body_terms(text), path
