"""Build a `tokenizers` tokenizer from a GGUF file's `tokenizer.*` metadata, cached on disk.

A GGUF stores a byte-level BPE tokenizer as its token list, merges, token types and the
name of llama.cpp's pre-tokenizer (`tokenizer.ggml.pre`). We rebuild the Hugging Face
pipeline each name stands for: the split regex (or digit splitting) before the byte-level
mapping, and the NFC normalizer Qwen2 uses. Building takes seconds, so the result is saved
as `<stem>.tokenizer.json` and reused while the file's tokenizer metadata is unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from .errors import UnsupportedModelError
from .gguf_file import GGUFFile
from .tokenizer import ModelTokenizer, TokenizerSpec

BUILDER_VERSION = 1
"""Bump when the built tokenizer changes, so cached files are rebuilt."""

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4
"""llama.cpp token types: control tokens are special; user-defined ones are matched whole."""

END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>")
"""Control tokens that end a turn in chat models, as llama.cpp also treats them."""

_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_PRE = {"qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT, "llama-bpe": _LLAMA3_SPLIT}
"""Pre-tokenizers that are one regex split before the byte-level mapping."""
_DIGITS_THEN_GPT2 = ("smollm", "starcoder", "refact")
"""Each digit its own piece, then GPT-2's regex."""
_GPT2 = ("gpt-2", "default")
_NFC_PRE = ("qwen2", "deepseek-r1-qwen")
SUPPORTED_PRE = (*_SPLIT_PRE, *_DIGITS_THEN_GPT2, *_GPT2)


def build_tokenizer(meta: Mapping[str, Any]) -> Tokenizer:
    """The byte-level BPE tokenizer described by GGUF metadata `meta`."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedModelError(
            f"GGUF tokenizer model {kind!r} is not supported (supported: byte-level BPE 'gpt2')"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in meta["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(
        models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges)
    )
    pre = meta.get("tokenizer.ggml.pre", "default")
    tokenizer.pre_tokenizer = _pre_tokenizer(pre)
    if pre in _NFC_PRE:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type")
    if types is not None:
        tokenizer.add_special_tokens(_added(tokens, types, TOKEN_TYPE_CONTROL, special=True))
        tokenizer.add_tokens(_added(tokens, types, TOKEN_TYPE_USER_DEFINED, special=False))
    return tokenizer


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level_only = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _SPLIT_PRE:
        split = pre_tokenizers.Split(Regex(_SPLIT_PRE[pre]), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level_only])
    if pre in _DIGITS_THEN_GPT2:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2])
    if pre in _GPT2:
        return gpt2
    raise UnsupportedModelError(
        f"GGUF pre-tokenizer {pre!r} is not supported (supported: {', '.join(SUPPORTED_PRE)})"
    )


def _added(tokens: list[str], types: Any, kind: int, special: bool) -> list[AddedToken]:
    return [
        AddedToken(token, special=special, normalized=False)
        for token, token_type in zip(tokens, types, strict=True)
        if token_type == kind
    ]


def spec_from_gguf(meta: Mapping[str, Any]) -> TokenizerSpec:
    """Chat template, BOS policy and stop tokens from GGUF metadata."""
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type")

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    stops = [
        meta[f"tokenizer.ggml.{key}"]
        for key in ("eos_token_id", "eot_token_id", "eom_token_id")
        if f"tokenizer.ggml.{key}" in meta
    ]
    if types is not None:
        stops += [
            i
            for i, (text, kind) in enumerate(zip(tokens, types, strict=True))
            if kind == TOKEN_TYPE_CONTROL and text in END_OF_TURN_TOKENS
        ]
    return TokenizerSpec(
        chat_template=meta.get("tokenizer.chat_template"),
        bos_token=token("bos_token_id"),
        eos_token=token("eos_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        stop_token_ids=tuple(sorted({int(i) for i in stops})),
    )


def tokenizer_from_gguf(gguf: GGUFFile, cache_dir: Path) -> ModelTokenizer:
    """The ModelTokenizer of `gguf`, its tokenizer.json built once into `cache_dir`.

    The cache is keyed by a hash of the file's raw tokenizer metadata and BUILDER_VERSION,
    so a different file under the same name is rebuilt, not trusted."""
    json_path = tokenizer_cache_path(gguf.path, cache_dir)
    key_path = json_path.with_suffix(".key")
    key = f"v{BUILDER_VERSION}:{gguf.metadata_digest('tokenizer.ggml.')}"
    if not (json_path.is_file() and _read(key_path) == key):
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(json_path, build_tokenizer(gguf.metadata).to_str())
        _write_atomic(key_path, key)
    return ModelTokenizer(json_path, spec_from_gguf(gguf.metadata))


def tokenizer_cache_path(gguf_path: Path, cache_dir: Path) -> Path:
    """Where `tokenizer_from_gguf` keeps the tokenizer.json built for `gguf_path`
    (`<cache_dir>/<stem>.tokenizer.json`, the contract's name)."""
    return cache_dir / f"{gguf_path.name.removesuffix('.gguf')}.tokenizer.json"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(name, 0o644)  # mkstemp makes it private; other tools read the tokenizer too
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
