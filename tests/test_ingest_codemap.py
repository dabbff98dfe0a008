# ruff: noqa: E501 - source snippets read best unwrapped
"""Definitions and references for the 12 languages, checked against `ast` on real code."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nsa_assist.ingest.codemap import CodeMapper, FileMap
from nsa_assist.ingest.languages import code_language, language_name
from nsa_assist.ingest.parse_cache import ParseCache, map_files
from nsa_assist.ingest.walk import SourceFile

# (file name, source, expected (name, kind, parent, start line), a doc that must be found,
#  a referenced name)
CASES = [
    (
        "m.py",
        'import os\nclass Shape(Base):\n    """A shape."""\n    def area(self, k: int) -> float:\n'
        "        return compute(k)\n\ndef make(a,\n         b):\n    return Shape()\n",
        [("Shape", "class", "", 2), ("area", "method", "Shape", 4), ("make", "function", "", 7)],
        "A shape.",
        "compute",
    ),
    (
        "m.js",
        "/** Makes things. */\nfunction make(a) { return build(a) }\n"
        "class Shape extends Base {\n  area(k) { return this.calc(k); }\n}\n"
        "const helper = (x) => x;\n",
        [
            ("make", "function", "", 2),
            ("Shape", "class", "", 3),
            ("area", "method", "Shape", 4),
            ("helper", "function", "", 6),
        ],
        "Makes things.",
        "build",
    ),
    (
        "m.ts",
        "/** A shape. */\nexport class Shape {\n  area(k: number): number { return calc(k); }\n}\n"
        "interface Sized { size(): number }\ntype Id = string;\n",
        [
            ("Shape", "class", "", 2),
            ("area", "method", "Shape", 3),
            ("Sized", "interface", "", 5),
            ("size", "method", "Sized", 5),
            ("Id", "type", "", 6),
        ],
        "A shape.",
        "calc",
    ),
    (
        "m.go",
        "package m\n\n// Area computes.\nfunc Area(k int) int { return calc(k) }\n"
        "type Shape struct{ k int }\nfunc (s *Shape) Grow() { s.k = helper.Scale() }\n"
        "type Sized interface { Size() int }\n",
        [
            ("Area", "function", "", 4),
            ("Shape", "class", "", 5),
            ("Grow", "method", "", 6),
            ("Sized", "interface", "", 7),
        ],
        "Area computes.",
        "Scale",
    ),
    (
        "m.rs",
        "/// Computes area.\nfn area(k: i32) -> i32 { calc(k) }\nstruct Shape { k: i32 }\n"
        "impl Shape {\n    fn grow(&self) { self.k.scale(); }\n}\ntrait Sized { fn size(&self); }\n",
        [
            ("area", "function", "", 2),
            ("Shape", "class", "", 3),
            ("Shape", "impl", "", 4),
            ("grow", "method", "Shape", 5),
            ("Sized", "interface", "", 7),
            ("size", "method", "Sized", 7),
        ],
        "Computes area.",
        "calc",
    ),
    (
        "Shape.java",
        "/** A shape. */\npublic class Shape extends Base {\n  public Shape() {}\n"
        "  int area(int k) { return calc(k); }\n}\ninterface Sized { int size(); }\n",
        [
            ("Shape", "class", "", 2),
            ("Shape", "method", "Shape", 3),
            ("area", "method", "Shape", 4),
            ("Sized", "interface", "", 6),
            ("size", "method", "Sized", 6),
        ],
        "A shape.",
        "calc",
    ),
    (
        "m.c",
        "/* Computes area. */\nint area(int k) { return calc(k); }\nstruct shape { int k; };\n"
        "typedef struct { int y; } point;\n",
        [("area", "function", "", 2), ("shape", "class", "", 3), ("point", "type", "", 4)],
        "Computes area.",
        "calc",
    ),
    (
        "m.cpp",
        "// A shape.\nclass Shape : public Base {\n public:\n  int area(int k) { return calc(k); }\n};\n"
        "int Shape::grow() { return 0; }\nnamespace geo { struct Point {}; }\n",
        [
            ("Shape", "class", "", 2),
            ("area", "method", "Shape", 4),
            ("grow", "method", "", 6),
            ("geo", "module", "", 7),
            ("Point", "class", "geo", 7),
        ],
        "A shape.",
        "calc",
    ),
    (
        "m.cs",
        "namespace Geo {\n  /// A shape.\n  public class Shape : Base {\n    public int Area(int k) "
        "{ return Calc(k); }\n  }\n  interface ISized { int Size(); }\n}\n",
        [
            ("Geo", "module", "", 1),
            ("Shape", "class", "Geo", 3),
            ("Area", "method", "Shape", 4),
            ("ISized", "interface", "Geo", 6),
            ("Size", "method", "ISized", 6),
        ],
        "A shape.",
        "Calc",
    ),
    (
        "m.rb",
        "# A shape.\nclass Shape < Base\n  def area(k)\n    calc(k)\n  end\nend\nmodule Geo\nend\n",
        [("Shape", "class", "", 2), ("area", "method", "Shape", 3), ("Geo", "module", "", 7)],
        "A shape.",
        "calc",
    ),
    (
        "m.php",
        "<?php\n/** A shape. */\nclass Shape extends Base {\n  public function area($k) "
        "{ return calc($k); }\n}\nfunction make($x) { return new Shape(); }\n",
        [("Shape", "class", "", 3), ("area", "method", "Shape", 4), ("make", "function", "", 6)],
        "A shape.",
        "calc",
    ),
    (
        "m.kt",
        "/** A shape. */\nclass Shape(val k: Int) : Base() {\n  fun area(): Int { return calc(k) }\n}\n"
        "object Registry { fun all() = 1 }\nfun make(x: Int) { x.grow() }\n",
        [
            ("Shape", "class", "", 2),
            ("area", "method", "Shape", 3),
            ("Registry", "class", "", 5),
            ("all", "method", "Registry", 5),
            ("make", "function", "", 6),
        ],
        "A shape.",
        "calc",
    ),
]


@pytest.mark.parametrize(
    ("name", "source", "expected", "doc", "ref"), CASES, ids=[c[0] for c in CASES]
)
def test_definitions_and_references(name: str, source: str, expected, doc: str, ref: str) -> None:
    language = code_language(name)
    assert language is not None
    file_map = CodeMapper().map_file(source, language)
    got = [(d.name, d.kind, d.parent, d.start) for d in file_map.definitions]
    assert got == expected
    assert doc in {d.doc for d in file_map.definitions}
    assert file_map.references.get(ref, 0) >= 1
    for definition in file_map.definitions:
        assert definition.start <= definition.end
        assert definition.name in definition.signature
        assert "\n" not in definition.signature


def test_twelve_languages_are_named() -> None:
    names = {language_name(c[0]) for c in CASES}
    assert names == {
        "python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "csharp",
        "ruby", "php", "kotlin",
    }  # fmt: skip


def _stdlib_files(package: str) -> list[Path]:
    return sorted(Path(json.__file__).parent.parent.joinpath(package).rglob("*.py"))


def test_file_map_json_round_trip() -> None:
    text = Path(json.__file__).parent.joinpath("decoder.py").read_text("utf-8")
    file_map = CodeMapper().map_file(text, code_language("x.py"))
    assert FileMap.from_json(json.loads(json.dumps(file_map.to_json()))) == file_map


CLASS_SOURCE = {".py": "class {}:\n    pass\n", ".js": "class {} {{}}\n"}


@pytest.mark.parametrize("suffix", [".py", ".js"])
def test_parse_cache_skips_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    rng = random.Random(11)
    source = CLASS_SOURCE[suffix]
    files = [
        SourceFile(f"m{i}{suffix}", source.format(f"C{i}_{rng.randint(0, 10**9)}"), "x")
        for i in range(20)
    ] + [SourceFile("notes.md", "# notes\n", "markdown")]
    calls: list[str] = []

    map_file = CodeMapper.map_file

    def counting(mapper, text, language):
        calls.append(text)
        return map_file(mapper, text, language)

    monkeypatch.setattr(CodeMapper, "map_file", counting)
    cache = ParseCache(tmp_path / "cache")
    first = map_files(files, cache)
    assert len(calls) == 20 and set(first) == {f.path for f in files[:20]}
    second = map_files(files, ParseCache(tmp_path / "cache"))
    assert len(calls) == 20 and second == first
    changed = [SourceFile(f"m3{suffix}", source.format("Changed"), "x"), *files[4:]]
    third = map_files(changed, ParseCache(tmp_path / "cache"))
    assert len(calls) == 21
    assert [d.name for d in third[f"m3{suffix}"].definitions] == ["Changed"]


def test_parallel_parse_matches_serial(tmp_path: Path) -> None:
    files = [
        SourceFile(p.name + str(i), p.read_text("utf-8"), "python")
        for i, p in enumerate(_stdlib_files("json") * 14)
    ]
    files = [SourceFile(f.path + ".py", f.text, f.language) for f in files]
    assert len(files) >= 64
    assert map_files(files, None, workers=2) == map_files(files, None, workers=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_files_with_the_same_content_share_one_cache_entry(tmp_path: Path, workers: int) -> None:
    text = Path(json.__file__).parent.joinpath("decoder.py").read_text("utf-8")
    distinct = [SourceFile(f"m{i}.py", f"{text}\n# {i}\n", "python") for i in range(70)]
    copies = [SourceFile(f"copy{i}.py", text, "python") for i in range(5)]
    cache = ParseCache(tmp_path / "cache")
    first = map_files(distinct + copies, cache, workers=workers)
    assert len({id(first[f.path]) for f in copies}) == 1
    assert first == map_files(distinct + copies, None, workers=1)
    again = map_files(distinct + copies, ParseCache(tmp_path / "cache"))
    assert again == first
