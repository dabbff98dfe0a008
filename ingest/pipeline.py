"""One call from a source and a question to a packed `Context`.

Code: walk, parse (cached), rank, pack. PDFs: read pages and sections, pack pages.
`nsa ingest`, `nsa ask` and the job runner call `ingest_source`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .context import Context, CountTokens
from .errors import SourceError
from .pack import PackConfig, pack_repository
from .parse_cache import MappedFiles, ParseCache, map_repository
from .rank import RankWeights, rank, rank_inputs
from .rank_inputs import INPUTS_VERSION, RankInputs
from .terms import parse_question
from .token_memo import TokenMemo
from .walk import SourceFile, WalkConfig, WalkResult, walk_source


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Everything but the source, question, budget and tokenizer; defaults suit most repos."""

    cache_dir: Path | None = None
    """Where parse results are kept between runs (None: parse every time)."""
    workers: int = 1
    """Processes that parse files not in the cache."""
    walk: WalkConfig = field(default_factory=WalkConfig)
    weights: RankWeights = field(default_factory=RankWeights)
    password: str | None = None
    """Opens an encrypted PDF."""
    tokenizer: str | None = None
    """Names the tokenizer `count_tokens` uses (a hash of its tokenizer.json, say): with a
    cache_dir, token counts are kept there under this name. None: every text is counted."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True, slots=True)
class Ingested:
    """The packed context and what the source held."""

    context: Context
    language_counts: dict[str, int]
    files: int
    notes: tuple[str, ...] = ()
    """Things the user should know (pages without a text layer, ...)."""


def is_pdf(source: Path) -> bool:
    return source.is_file() and source.suffix.lower() == ".pdf"


def ingest_source(
    source: Path,
    question: str,
    budget: int,
    count_tokens: CountTokens,
    options: IngestOptions | None = None,
    walked: WalkResult | None = None,
) -> Ingested:
    """Pack `source` (a PDF, folder, git checkout, archive or text file) for `question`.
    walked: the source's walk from `walk_repository`, when the caller has it already."""
    if is_pdf(source):
        return ingest_pdf(source, question, budget, count_tokens, options)
    return ingest_repository(source, question, budget, count_tokens, options, walked)


def walk_repository(source: Path, options: IngestOptions | None = None) -> WalkResult:
    """The text files `ingest_repository` would read; SourceError when there are none.

    For callers with slow work before packing (the CLI loads, and on first use downloads, a
    model for its tokenizer): a source with nothing to read fails first, and the walk is
    handed on to `ingest_source`."""
    options = options or IngestOptions()
    cache = ParseCache(options.cache_dir) if options.cache_dir is not None else None
    try:
        return _walk_some(source, options.walk, cache)
    finally:
        if cache is not None:
            cache.close()


def _walk_some(source: Path, config: WalkConfig, cache: ParseCache | None) -> WalkResult:
    walked = walk_source(source, config, cache)
    if not walked.files:
        raise SourceError(f"no readable text files in {source}")
    return walked


def ingest_pdf(
    source: Path,
    question: str,
    budget: int,
    count_tokens: CountTokens,
    options: IngestOptions | None = None,
) -> Ingested:
    """Pack the pages of a PDF (best-matching pages first when there is a question)."""
    from .pdf import read_pdf  # PyMuPDF loads only when a PDF is read (~0.15 s per start)
    from .pdf_pack import pack_pages

    options = options or IngestOptions()
    document = read_pdf(source, options.password)
    context = pack_pages(document, parse_question(question), budget, count_tokens)
    missing = document.pages_without_text
    notes = (f"pages without a text layer (scanned?): {_page_list(missing)}",) if missing else ()
    return Ingested(context, {"pdf": len(document.pages)}, 1, notes)


def cached_rank_inputs(
    files: Sequence[SourceFile], mapped: MappedFiles, weights: RankWeights, cache: ParseCache | None
) -> RankInputs:
    """The ranker's question-independent inputs, from the cache when this snapshot of the
    repository was ranked before (a second question), else built and stored."""
    made_by = f"{INPUTS_VERSION} {weights.min_name_chars} {weights.max_definers}"
    key = hashlib.blake2b(f"{made_by} {mapped.snapshot}".encode(), digest_size=20).hexdigest()
    stored = cache.get_snapshot(key) if cache is not None else None
    if stored is not None:
        return RankInputs.from_arrays(stored)
    inputs = rank_inputs([file.path for file in files], mapped.maps, weights)
    if cache is not None:
        cache.put_snapshot(key, inputs.to_arrays())
    return inputs


def remembered_counts(
    count_tokens: CountTokens, tokenizer: str | None, cache: ParseCache | None
) -> TokenMemo | None:
    """`count_tokens` with counts kept in `cache`, when there is one and the tokenizer is named."""
    if cache is None or tokenizer is None:
        return None
    return TokenMemo(count_tokens, tokenizer, cache)


def _page_list(numbers: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in numbers)


def ingest_repository(
    source: Path,
    question: str,
    budget: int,
    count_tokens: CountTokens,
    options: IngestOptions | None = None,
    walked: WalkResult | None = None,
) -> Ingested:
    """Pack a folder, git checkout, archive or single text file for `question`."""
    with collector_paused():
        return _ingest_repository(source, question, budget, count_tokens, options, walked)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration, back as it was after.

    An ingest builds ~100k long-lived objects (texts, maps, index) and then as many
    short-lived ones (ranked definitions, parts); the collector would scan the first again
    and again (~13% of a warm run on a large repository, measured). Ingest makes no cycles
    of its own: reference counting frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _ingest_repository(
    source: Path,
    question: str,
    budget: int,
    count_tokens: CountTokens,
    options: IngestOptions | None,
    walked: WalkResult | None = None,
) -> Ingested:
    options = options or IngestOptions()
    config = PackConfig(budget=budget)
    cache = ParseCache(options.cache_dir) if options.cache_dir is not None else None
    try:
        if walked is None:
            walked = _walk_some(source, options.walk, cache)
        mapped = map_repository(walked.files, cache, options.workers)
        inputs = cached_rank_inputs(walked.files, mapped, options.weights, cache)
        question_terms = parse_question(question)
        ranking = rank(walked.files, mapped.definitions, question_terms, inputs, options.weights)
        memo = remembered_counts(count_tokens, options.tokenizer, cache)
        count = memo or count_tokens
        context = pack_repository(walked, mapped.definitions, ranking, config, count)
        if memo is not None:
            memo.flush()
    finally:
        if cache is not None:
            cache.close()
    counts = Counter(file.language for file in walked.files)
    return Ingested(context, dict(sorted(counts.items())), len(walked.files))
