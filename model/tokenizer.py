"""The model's tokenizer: a `tokenizers` tokenizer.json plus what that file does not say
(chat template, BOS policy, which tokens end a turn).

`tokenizer_json` is a plain file so torch-free code (ingest's token counting) can load it
with `tokenizers` alone.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .chat import ChatTemplate
from .errors import ModelFileError

REPLACEMENT_CHAR = "\ufffd"
"""What a byte-level decoder yields for an incomplete UTF-8 sequence."""


@dataclass(frozen=True, slots=True)
class TokenizerSpec:
    """Tokenizer facts kept outside tokenizer.json.

    `stop_token_ids`: every id that ends the assistant's turn (EOS and end-of-turn tokens).
    `add_bos`: whether encoding a whole prompt starts with `bos_token`."""

    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    add_bos: bool
    stop_token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.stop_token_ids:
            raise ModelFileError("the tokenizer defines no end-of-sequence token")
        if self.add_bos and self.bos_token is None:
            raise ModelFileError("the tokenizer asks for a BOS token but defines none")


class ModelTokenizer:
    """Encode / decode text and render chats for one model."""

    def __init__(self, tokenizer_json: Path, spec: TokenizerSpec) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as error:  # tokenizers raises a bare Exception on a bad file
            raise ModelFileError(f"cannot load tokenizer {tokenizer_json}: {error}") from None
        self.tokenizer_json = tokenizer_json
        self.spec = spec
        self.stop_token_ids = spec.stop_token_ids
        self._bos_id = self._tokenizer.token_to_id(spec.bos_token) if spec.bos_token else None
        self._chat = (
            ChatTemplate(
                spec.chat_template, {"bos_token": spec.bos_token, "eos_token": spec.eos_token}
            )
            if spec.chat_template
            else None
        )

    @functools.cached_property
    def identity(self) -> str:
        """A content hash of tokenizer.json: names this tokenizer in caches of token counts."""
        return file_identity(self.tokenizer_json)

    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer knows, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Token ids of `text`; with `add_special`, prefixed by BOS when the model wants one.

        Special-token text in `text` (e.g. `<|im_start|>`) becomes the special token."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        if add_special and self.spec.add_bos and self._bos_id is not None:
            ids.insert(0, self._bos_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of `ids`; special tokens (`<|im_end|>`, ...) left out unless `skip_special` is
        False."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    def apply_chat(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for `messages`, rendered with the model's own chat template."""
        if self._chat is None:
            raise ModelFileError(f"{self.tokenizer_json.name}: the model has no chat template")
        return self._chat.render(messages, add_generation_prompt)

    def stream_decoder(self) -> StreamDecoder:
        """A fresh incremental decoder for one generated sequence."""
        return StreamDecoder(self)


class StreamDecoder:
    """Turns generated ids into text as they arrive, never splitting a UTF-8 character.

    A byte-level token may hold part of a multi-byte character; such ids wait until the
    character is complete."""

    def __init__(self, tokenizer: ModelTokenizer) -> None:
        self._tokenizer = tokenizer
        self._pending: list[int] = []

    def push(self, token_id: int) -> str:
        """Text completed by `token_id` ("" while a character is still partial)."""
        self._pending.append(token_id)
        text = self._tokenizer.decode(self._pending)
        if text.endswith(REPLACEMENT_CHAR):
            return ""
        self._pending.clear()
        return text

    def flush(self) -> str:
        """Whatever is still held at the end of the sequence (partial bytes shown as U+FFFD)."""
        text = self._tokenizer.decode(self._pending)
        self._pending.clear()
        return text


def file_identity(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256 (a tokenizer.json's identity in caches)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
