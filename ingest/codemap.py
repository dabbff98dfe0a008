"""Definitions and references of one source file, read with tree-sitter.

A `FileMap` is the per-file record the ranker and the repo map use: each definition's name,
kind, one-line signature, line range and docstring, how often each name is referenced, and
how often each word occurs. Every language, Python included, goes through this one
tree-sitter path (tests/test_ingest_python_map.py checks Python's definitions against `ast`).
It is plain data (JSON round-trip), so the parse cache can store it by content hash.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from tree_sitter import Node, Parser, Query, QueryCursor
from tree_sitter_language_pack import get_language, get_parser

from .languages import CodeLanguage
from .terms import word_counts

MAPPER_VERSION = "codemap-2"
"""Part of every parse cache key (with the language's query): bump it when this module's
extraction changes what a `FileMap` holds, so maps made by older code are never read."""
SIGNATURE_MAX_CHARS = 200
DOC_MAX_CHARS = 240
BODY_TYPES = frozenset(
    {
        "block", "body_statement", "class_body", "declaration_list", "field_declaration_list",
        "statement_block", "compound_statement", "function_body", "interface_body", "enum_body",
        "constructor_body", "enum_variant_list", "enumerator_list", "enum_member_declaration_list",
    }
)  # fmt: skip
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment", "multiline_comment"})
WRAPPER_TYPES = frozenset({"export_statement", "decorated_definition", "template_declaration"})
CONTAINER_KINDS = frozenset({"class", "interface", "module", "impl"})
_COMMENT_MARKS = re.compile(r"^\s*(?:/\*\*?|\*/|\*|///?|//!|#+|--)\s?")
_SPACES = re.compile(r"\s+")


class Definition(NamedTuple):
    """A class, function, method, interface, type or module defined in a file (1-based lines).

    A named tuple, not a dataclass: a large repository has ~100k, loaded from the cache on
    every question, and a tuple is built three times faster than a frozen dataclass."""

    name: str
    kind: str
    signature: str
    start: int
    end: int
    doc: str = ""
    parent: str = ""


@dataclass(frozen=True, slots=True)
class FileMap:
    """What one file defines, which names it uses, and every word in it.

    Term counts are not stored: the ranker reads the few terms a question asks for off
    `words` and the definitions, so mapping a file costs one C-speed count of its words
    instead of splitting and stemming each one."""

    definitions: tuple[Definition, ...]
    references: dict[str, int]
    """Names used (name -> count): calls, imports, types, bases and the like (the query's
    `@ref` captures)."""
    words: dict[str, int]
    """Each run of ASCII letters, digits and `_` in the text (comments, strings), counted."""

    @property
    def length(self) -> int:
        """Words in the whole text (the file's length for BM25)."""
        return sum(self.words.values())

    def to_json(self) -> dict:
        return {"d": [tuple(d) for d in self.definitions], "r": self.references, "w": self.words}

    @classmethod
    def from_json(cls, data: dict) -> FileMap:
        return cls(tuple(map(Definition._make, data["d"])), data["r"], data["w"])


class CodeMapper:
    """Parses source text into `FileMap`s; holds one parser and compiled query per grammar."""

    def __init__(self) -> None:
        self._parsers: dict[str, Parser] = {}
        self._queries: dict[str, tuple[Query, Query]] = {}

    def map_file(self, text: str, language: CodeLanguage) -> FileMap:
        """Definitions and references of `text`, parsed as `language`."""
        source = text.encode("utf-8")
        tree = self._parser(language).parse(source)
        definitions: list[tuple[int, int, Definition]] = []
        defining, referring = self._queries_of(language)
        for _, captures in QueryCursor(defining).matches(tree.root_node):
            kind, node = next(
                (key[4:], nodes[0]) for key, nodes in captures.items() if key.startswith("def.")
            )
            definition = _definition(node, _text(captures["name"][0]), kind, language)
            definitions.append((node.start_byte, node.end_byte, definition))
        # references by `captures` (one C call, ~3x faster than walking matches), counted
        # as byte slices and decoded once per distinct name
        used = QueryCursor(referring).captures(tree.root_node).get("ref", ())
        counted = Counter(source[node.start_byte : node.end_byte] for node in used)
        refs = {name.decode("utf-8", "replace"): n for name, n in sorted(counted.items())}
        return FileMap(with_parents(definitions), refs, word_counts(text))

    def _parser(self, language: CodeLanguage) -> Parser:
        if language.grammar not in self._parsers:
            self._parsers[language.grammar] = get_parser(language.grammar)
        return self._parsers[language.grammar]

    def _queries_of(self, language: CodeLanguage) -> tuple[Query, Query]:
        """The language's query compiled twice: once with only its definition patterns
        (`@def.*`, read match by match to pair each with its `@name`), once with only
        its reference patterns (`@ref`, read as one list of captures)."""
        if language.grammar not in self._queries:
            grammar = get_language(language.grammar)
            defining, referring = Query(grammar, language.query), Query(grammar, language.query)
            for index in range(defining.pattern_count):
                start, end = (
                    defining.start_byte_for_pattern(index),
                    defining.end_byte_for_pattern(index),
                )
                pattern = language.query.encode()[start:end]
                assert (b"@def." in pattern) != (b"@ref" in pattern), pattern  # one or the other
                (referring if b"@def." in pattern else defining).disable_pattern(index)
            self._queries[language.grammar] = (defining, referring)
        return self._queries[language.grammar]


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _definition(node: Node, name: str, kind: str, language: CodeLanguage) -> Definition:
    body = _body(node)
    doc = _body_docstring(body) if language.docstring_in_body else _leading_comment(node)
    return Definition(
        name=name,
        kind=kind,
        signature=_signature(node, body, name),
        start=node.start_point.row + 1,
        end=_end_row(node, body) + 1,
        doc=doc,
    )


def _end_row(node: Node, body: Node | None) -> int:
    """Last row of a definition, without comments that trail its body (they belong below)."""
    last = body
    while last is not None and last.children:
        code = [child for child in last.children if child.type not in COMMENT_TYPES]
        if not code:
            break
        last = code[-1]
    return last.end_point.row if last is not None else node.end_point.row


def _body(node: Node) -> Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    return next((child for child in node.named_children if child.type in BODY_TYPES), None)


def _signature(node: Node, body: Node | None, name: str) -> str:
    """The header of a definition: its text up to the body, on one line, naming it."""
    full = node.text or b""
    if body is not None and body.start_byte > node.start_byte:
        head = full[: _header_end(node, body) - node.start_byte]
    else:
        head = full.split(b"\n", 1)[0].split(b"{", 1)[0]
    if node.type == "type_spec":  # Go: `S struct` reads better as `type S struct`
        head = b"type " + head
    flat = _SPACES.sub(" ", head.decode("utf-8", "replace")).strip().rstrip("{").rstrip()
    if name not in flat:  # C `typedef struct {...} name;`: the name comes after the body
        flat = f"{flat} … {name}"
    return flat if len(flat) <= SIGNATURE_MAX_CHARS else flat[: SIGNATURE_MAX_CHARS - 1] + "…"


def _header_end(node: Node, body: Node) -> int:
    """Where the header ends: before the body and any comment between the two (Python's
    `def f():  # why` keeps its comment out of the signature)."""
    end = body.start_byte
    for child in node.children:
        if child.start_byte >= body.start_byte:
            break
        if child.type not in COMMENT_TYPES:
            end = child.end_byte
    return end


def _body_docstring(body: Node | None) -> str:
    """Python: the string that opens the body (grammars differ on wrapping it in a statement)."""
    if body is None or not body.named_children:
        return ""
    first = body.named_children[0]
    if first.type == "expression_statement" and first.named_children:
        first = first.named_children[0]
    if first.type != "string":
        return ""
    content = [child for child in first.named_children if child.type == "string_content"]
    return shorten_doc("".join(_text(child) for child in content))


def _leading_comment(node: Node) -> str:
    """Comments right above a definition (or above its export/decorator/template wrapper)."""
    anchor = node.parent if node.parent is not None and node.parent.type in WRAPPER_TYPES else node
    lines: list[str] = []
    row = anchor.start_point.row
    sibling = anchor.prev_named_sibling
    while (
        sibling is not None and sibling.type in COMMENT_TYPES and sibling.end_point.row >= row - 1
    ):
        lines[:0] = _text(sibling).splitlines()
        row = sibling.start_point.row
        sibling = sibling.prev_named_sibling
    cleaned = (_COMMENT_MARKS.sub("", line).rstrip("*/ ").strip() for line in lines)
    return shorten_doc("\n".join(line for line in cleaned if line))


def shorten_doc(doc: str) -> str:
    paragraph = doc.strip().split("\n\n", 1)[0]
    flat = _SPACES.sub(" ", paragraph).strip()
    return flat if len(flat) <= DOC_MAX_CHARS else flat[: DOC_MAX_CHARS - 1] + "…"


def with_parents(definitions: list[tuple[int, int, Definition]]) -> tuple[Definition, ...]:
    """Sort by position; name each definition's enclosing container; functions there are methods.

    Nesting is decided on byte ranges, so one-line code (minified, C#) nests correctly.
    """
    ordered = sorted(definitions, key=lambda item: (item[0], -item[1], item[2].name))
    result: list[Definition] = []
    stack: list[tuple[int, Definition]] = []
    for start, end, item in ordered:
        while stack and stack[-1][0] <= start:
            stack.pop()
        parent = stack[-1][1].name if stack else ""
        kind = "method" if parent and item.kind == "function" else item.kind
        updated = Definition(
            item.name, kind, item.signature, item.start, item.end, item.doc, parent
        )
        result.append(updated)
        if item.kind in CONTAINER_KINDS:
            stack.append((end, updated))
    return tuple(result)
