"""Which language a file is written in, and the tree-sitter grammar and query that read it."""

from __future__ import annotations

from dataclasses import dataclass

from . import tag_queries


@dataclass(frozen=True, slots=True)
class CodeLanguage:
    """A language we parse: its name, the grammar's name in the language pack, and its query."""

    name: str
    grammar: str
    query: str
    docstring_in_body: bool = False
    """Python keeps its docstring as the body's first string; the rest use leading comments."""


PYTHON = CodeLanguage("python", "python", tag_queries.PYTHON, docstring_in_body=True)
JAVASCRIPT = CodeLanguage("javascript", "javascript", tag_queries.JAVASCRIPT)
TYPESCRIPT = CodeLanguage("typescript", "typescript", tag_queries.TYPESCRIPT)
TSX = CodeLanguage("typescript", "tsx", tag_queries.TYPESCRIPT)
GO = CodeLanguage("go", "go", tag_queries.GO)
RUST = CodeLanguage("rust", "rust", tag_queries.RUST)
JAVA = CodeLanguage("java", "java", tag_queries.JAVA)
C = CodeLanguage("c", "c", tag_queries.C)
CPP = CodeLanguage("cpp", "cpp", tag_queries.CPP)
CSHARP = CodeLanguage("csharp", "csharp", tag_queries.CSHARP)
RUBY = CodeLanguage("ruby", "ruby", tag_queries.RUBY)
PHP = CodeLanguage("php", "php", tag_queries.PHP)
KOTLIN = CodeLanguage("kotlin", "kotlin", tag_queries.KOTLIN)

CODE_BY_SUFFIX: dict[str, CodeLanguage] = {
    ".py": PYTHON,
    ".pyi": PYTHON,
    ".js": JAVASCRIPT,
    ".mjs": JAVASCRIPT,
    ".cjs": JAVASCRIPT,
    ".jsx": JAVASCRIPT,
    ".ts": TYPESCRIPT,
    ".mts": TYPESCRIPT,
    ".cts": TYPESCRIPT,
    ".tsx": TSX,
    ".go": GO,
    ".rs": RUST,
    ".java": JAVA,
    ".c": C,
    ".h": C,
    ".cc": CPP,
    ".cpp": CPP,
    ".cxx": CPP,
    ".hpp": CPP,
    ".hh": CPP,
    ".hxx": CPP,
    ".cs": CSHARP,
    ".rb": RUBY,
    ".php": PHP,
    ".kt": KOTLIN,
    ".kts": KOTLIN,
}

TEXT_BY_SUFFIX: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "restructuredtext",
    ".txt": "text",
    ".adoc": "asciidoc",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".html": "html",
    ".css": "css",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".proto": "protobuf",
    ".swift": "swift",
    ".scala": "scala",
    ".lua": "lua",
    ".r": "r",
    ".m": "objective-c",
    ".cu": "cuda",
    ".cuh": "cuda",
    ".pyx": "cython",
    ".pxd": "cython",
    ".cmake": "cmake",
}

TEXT_BY_NAME: dict[str, str] = {
    "makefile": "make",
    "dockerfile": "dockerfile",
    "cmakelists.txt": "cmake",
    "license": "text",
    "copying": "text",
    "readme": "text",
}

DOC_SUFFIXES = frozenset({".md", ".markdown", ".rst", ".txt", ".adoc"})
NOT_DOCS = ("license", "licence", "copying", "notice", "authors", "requirements")
"""Prose files that say nothing about how the code works."""


def file_name(path: str) -> str:
    """The last part of a posix path (what `PurePosixPath.name` gives, without the object:
    the walk asks this of every file)."""
    return path.rsplit("/", 1)[-1]


def suffix(path: str) -> str:
    """The suffix of a posix path's file name, as `PurePosixPath.suffix` gives it."""
    name = file_name(path)
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def code_language(path: str) -> CodeLanguage | None:
    """The parsed language of `path` (by suffix), or None for text we do not parse."""
    return CODE_BY_SUFFIX.get(suffix(path).lower())


def language_name(path: str) -> str:
    """A display name for `path`'s language (code or text), "other" when unknown."""
    ending = suffix(path).lower()
    code = CODE_BY_SUFFIX.get(ending)
    if code is not None:
        return code.name
    by_name = TEXT_BY_NAME.get(file_name(path).lower())
    if by_name is not None:
        return by_name
    return TEXT_BY_SUFFIX.get(ending, "other")


def is_doc(path: str) -> bool:
    """True for prose files (README, docs) that the packer puts first when at the top."""
    name = file_name(path).lower()
    if name.startswith("readme"):
        return True
    return suffix(name) in DOC_SUFFIXES and not name.startswith((".", *NOT_DOCS))
