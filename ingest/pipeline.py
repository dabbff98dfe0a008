"""One call from a source and a question to a packed `Context`: walk, parse, rank, pack.

`nsa ingest`, `nsa ask` and the job runner use this; PDFs go through `pdf.read_pdf` and
`pdf_pack.pack_pages` instead of the code path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .context import Context, CountTokens
from .errors import SourceError
from .pack import PackConfig, pack_repository
from .parse_cache import ParseCache, map_files
from .rank import RankWeights, rank
from .terms import parse_question
from .walk import WalkConfig, walk_source


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Everything but the source, question, budget and tokenizer; defaults suit most repos."""

    cache_dir: Path | None = None
    """Where parse results are kept between runs (None: parse every time)."""
    workers: int = 1
    """Processes that parse files not in the cache."""
    walk: WalkConfig = field(default_factory=WalkConfig)
    weights: RankWeights = field(default_factory=RankWeights)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True, slots=True)
class Ingested:
    """The packed context and what the source held."""

    context: Context
    language_counts: dict[str, int]
    files: int


def ingest_repository(
    source: Path,
    question: str,
    budget: int,
    count_tokens: CountTokens,
    options: IngestOptions | None = None,
) -> Ingested:
    """Pack a folder, git checkout, archive or single text file for `question`."""
    options = options or IngestOptions()
    config = PackConfig(budget=budget)
    walked = walk_source(source, options.walk)
    if not walked.files:
        raise SourceError(f"no readable text files in {source}")
    cache = ParseCache(options.cache_dir) if options.cache_dir is not None else None
    try:
        maps = map_files(walked.files, cache, options.workers)
    finally:
        if cache is not None:
            cache.close()
    ranking = rank(walked.files, maps, parse_question(question), options.weights)
    context = pack_repository(walked, maps, ranking, config, count_tokens)
    counts = Counter(file.language for file in walked.files)
    return Ingested(context, dict(sorted(counts.items())), len(walked.files))
