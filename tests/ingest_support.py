"""Helpers for the ingest tests: a stand-in token counter and a trained real tokenizer."""

from __future__ import annotations

import re
from pathlib import Path

_PIECE = re.compile(r"\w+|[^\w\s]")


def standin_count_tokens(text: str) -> int:
    """A STAND-IN for a model tokenizer (words and punctuation marks), deterministic and fast.

    The model cache holds no tokenizer.json on test machines, so packing tests count with this;
    `train_tokenizer_json` makes a real BPE tokenizer where one is needed.
    """
    return len(_PIECE.findall(text))


def train_tokenizer_json(path: Path, corpus: list[str], vocab_size: int = 2000) -> Path:
    """Train a small byte-level BPE on `corpus` and save it as a tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(path))
    return path


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create `files` (relative path -> text or bytes) under `root`."""
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root
