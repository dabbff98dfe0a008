"""Token counts kept in the parse cache, so a second question does not count the same text.

Packing a 64k context counts ~60 texts (whole files, definitions, repo-map trials, the
final prompt) with the model's tokenizer: ~1 s on a large repository, most of a warm run.
The count of a text depends only on the text and the tokenizer, so it is stored under a
hash of both; the caller names the tokenizer (a hash of its tokenizer.json, say) because a
counting function cannot say which tokenizer it wraps. Same text, same tokenizer name: the
stored count, which the tokenizer would give again.
"""

from __future__ import annotations

import hashlib

from .context import CountTokens
from .parse_cache import ParseCache


class TokenMemo:
    """`count_tokens` that looks each text up in the cache first; new counts are stored on
    `flush` (one transaction, not one per count)."""

    def __init__(self, count_tokens: CountTokens, tokenizer: str, cache: ParseCache) -> None:
        self._count = count_tokens
        self._salt = hashlib.sha256(f"token-count-1 {tokenizer}\0".encode()).digest()
        self._cache = cache
        self._new: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        key = hashlib.sha256(self._salt + text.encode("utf-8")).hexdigest()[:40]
        found = self._new.get(key)
        if found is None:
            found = self._cache.get_tokens(key)
        if found is None:
            found = self._count(text)
            self._new[key] = found
        return found

    def flush(self) -> None:
        """Store the counts made since the last flush."""
        if self._new:
            self._cache.put_tokens(self._new.items())
            self._new = {}
