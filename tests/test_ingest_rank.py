"""Ranking internals checked against plain computations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsa_assist.ingest.codemap import CodeMapper
from nsa_assist.ingest.languages import PYTHON
from nsa_assist.ingest.rank import _part_start_pattern
from nsa_assist.ingest.terms import parse_question, split_identifier, stem

STDLIB = Path(json.__file__).parent.parent


def _names() -> list[str]:
    names: set[str] = set()
    mapper = CodeMapper()
    for package in ("email", "http", "json", "asyncio"):
        for path in sorted((STDLIB / package).glob("*.py")):
            found = mapper.map_file(path.read_text("utf-8"), PYTHON).definitions
            names.update(d.name for d in found)
    names.update(["learningRate", "HTTPSConnection", "xHTTPServer", "RATE_LIMIT", "v2rate"])
    return sorted(names)


@pytest.mark.parametrize(
    "question",
    [
        "how is the http connection pool sized",
        "where are learning rate schedulers for the optimizer defined",
        "what parses the message headers and the boundary",
        "how does the event loop schedule callbacks",
    ],
)
def test_a_name_without_a_term_at_a_part_start_holds_none(question: str) -> None:
    terms = parse_question(question).terms
    pattern = _part_start_pattern(terms)
    hits = 0
    for name in _names():
        held = len({stem(part) for part in split_identifier(name)} & terms)
        if pattern.search(name) is None:
            assert held == 0, name
        hits += held > 0
    assert hits > 0
