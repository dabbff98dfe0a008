"""Tokenizers built from GGUF metadata against transformers' own GGUF tokenizer (the oracle):
same ids on varied text, same chat prompts; plus caching, streaming and HF folders."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from model_fixtures import oracle_folder, qwen05_gguf, smollm2_gguf  # noqa: F401 (fixtures)

from nsa_assist.model.chat import ChatTemplateError
from nsa_assist.model.errors import ModelFileError
from nsa_assist.model.gguf_file import GGUFFile
from nsa_assist.model.gguf_tokenizer import tokenizer_from_gguf
from nsa_assist.model.hf_folder import tokenizer_from_folder
from nsa_assist.model.tokenizer import ModelTokenizer, TokenizerSpec

SAMPLE = (
    Path(__file__).read_text(encoding="utf-8")[:1500]
    + """
Unicode: naïve café, Ünïcödé, “quotes” — dashes… 日本語のテキストと中文字符，한국어 텍스트.
Emoji: 😀🚀 👩‍👩‍👧‍👦 🇯🇵 ❤️
Whitespace:    four spaces\t\ttabs\n\n\n   \r\n trailing   \n\tdef f(x):\n        return x**2
Numbers: 3.14159 1234567890 1,000,000 0x1F 2025-11-28T12:34:56Z -42 1e-10
Contractions: I'm you're he'll we've they'd IT'S DON'T
Special: <|im_start|>user\nhi<|im_end|> <|endoftext|>
"""
)
CONVERSATIONS = [
    [{"role": "user", "content": "What does `walk()` do?"}],
    [
        {"role": "system", "content": "Answer with file:line citations."},
        {"role": "user", "content": 'Where is "auth" <enforced> & why?'},
        {"role": "assistant", "content": "In app/auth.py:12."},
        {"role": "user", "content": "日本語で説明して 🚀"},
    ],
]


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:  # noqa: F811
    return tokenizer_from_gguf(GGUFFile(smollm2_gguf), tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def smollm2_oracle(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    from transformers import AutoTokenizer

    folder = oracle_folder(smollm2_gguf, tmp_path_factory.mktemp("oracle"))
    return AutoTokenizer.from_pretrained(folder, gguf_file=smollm2_gguf.name)


def _assert_same_as_oracle(ours: ModelTokenizer, oracle, text: str) -> None:
    assert ours.encode(text) == oracle.encode(text, add_special_tokens=False)
    for messages in CONVERSATIONS:
        for generation in (True, False):
            want = oracle.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation
            )
            assert ours.apply_chat(messages, add_generation_prompt=generation) == want


def test_smollm2_matches_transformers(smollm2: ModelTokenizer, smollm2_oracle) -> None:
    _assert_same_as_oracle(smollm2, smollm2_oracle, SAMPLE)
    assert smollm2.decode(smollm2.encode(SAMPLE), skip_special=False) == SAMPLE


def test_smollm2_matches_transformers_on_random_text(smollm2: ModelTokenizer, smollm2_oracle):
    rng = random.Random(os.urandom(8))
    # no digits: see test_smollm2_splits_every_digit_as_llama_cpp_does
    alphabet = "abcXYZ \n\t_-.,;:'\"(){}<>/\\éü日本😀한"
    for _ in range(20):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))
        assert smollm2.encode(text) == smollm2_oracle.encode(text, add_special_tokens=False), text


def test_smollm2_splits_every_digit_as_llama_cpp_does(smollm2: ModelTokenizer) -> None:
    # llama.cpp's "smollm" pre-tokenizer isolates each \p{N} before GPT-2's regex, also for
    # numerals; transformers' GGUF conversion skips that step, so there " ١", " ½" stay one
    # piece and "}  1" splits as "}", " ", " 1" instead of "}", "  ", "1".
    pieces = ["x", " ", "١", "٢", " ", "3", "4", " ", "½", "}", "  ", "1"]
    assert smollm2.encode("".join(pieces)) == [i for piece in pieces for i in smollm2.encode(piece)]


def test_smollm2_special_tokens(smollm2: ModelTokenizer) -> None:
    assert smollm2.stop_token_ids == (0, 2)  # <|endoftext|>, <|im_end|>
    assert smollm2.encode("<|im_start|>") == [1]
    assert smollm2.encode("hi", add_special=True) == smollm2.encode("hi")  # no BOS for SmolLM2
    assert smollm2.decode(smollm2.encode("<|im_start|>hi<|im_end|>")) == "hi"


def test_stream_decoder_never_splits_a_character(smollm2: ModelTokenizer) -> None:
    text = "naïve 日本語 😀🚀 👩‍👩‍👧‍👦 ok"
    ids = smollm2.encode(text)
    decoder = smollm2.stream_decoder()
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert "" in pieces  # some emoji span several byte-level tokens


def test_tokenizer_json_is_cached_by_content(smollm2_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    first = tokenizer_from_gguf(GGUFFile(smollm2_gguf), tmp_path)
    built = first.tokenizer_json.stat().st_mtime_ns
    again = tokenizer_from_gguf(GGUFFile(smollm2_gguf), tmp_path)
    assert again.tokenizer_json == first.tokenizer_json
    assert again.tokenizer_json.stat().st_mtime_ns == built  # reused, not rebuilt

    key = first.tokenizer_json.with_name(first.tokenizer_json.name.removesuffix(".json") + ".key")
    key.write_text("v1:from-another-file")  # as if a different GGUF had the same name
    first.tokenizer_json.write_text("{}")
    rebuilt = tokenizer_from_gguf(GGUFFile(smollm2_gguf), tmp_path)
    assert rebuilt.encode("hello world") == first.encode("hello world")
    assert key.read_text() != "v1:from-another-file"


def test_tokenizer_json_loads_with_tokenizers_alone(smollm2: ModelTokenizer) -> None:
    from tokenizers import Tokenizer

    plain = Tokenizer.from_file(str(smollm2.tokenizer_json))
    assert plain.encode(SAMPLE, add_special_tokens=False).ids == smollm2.encode(SAMPLE)


def test_chat_template_runs_sandboxed(smollm2: ModelTokenizer) -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    spec = TokenizerSpec(evil, None, "<|im_end|>", False, (2,))
    with pytest.raises(ChatTemplateError):
        ModelTokenizer(smollm2.tokenizer_json, spec).apply_chat(CONVERSATIONS[0])
    refusing = "{{ raise_exception('roles must alternate') }}"
    spec = TokenizerSpec(refusing, None, "<|im_end|>", False, (2,))
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        ModelTokenizer(smollm2.tokenizer_json, spec).apply_chat(CONVERSATIONS[0])


def test_spec_needs_a_stop_token() -> None:
    with pytest.raises(ModelFileError, match="end-of-sequence"):
        TokenizerSpec(None, None, None, False, ())


def test_hf_folder_tokenizer(smollm2: ModelTokenizer, tmp_path: Path) -> None:
    shutil.copyfile(smollm2.tokenizer_json, tmp_path / "tokenizer.json")
    config = {
        "bos_token": {"content": "<|im_start|>"},
        "eos_token": "<|im_end|>",
        "chat_template": smollm2.spec.chat_template,
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    folder = tokenizer_from_folder(tmp_path)
    assert folder.stop_token_ids == (0, 2, 7)
    assert folder.apply_chat(CONVERSATIONS[1]) == smollm2.apply_chat(CONVERSATIONS[1])
    assert folder.encode(SAMPLE) == smollm2.encode(SAMPLE)


@pytest.mark.slow
def test_qwen05_matches_transformers(qwen05_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    from transformers import AutoTokenizer

    ours = tokenizer_from_gguf(GGUFFile(qwen05_gguf), tmp_path)
    folder = oracle_folder(qwen05_gguf, tmp_path)
    oracle = AutoTokenizer.from_pretrained(folder, gguf_file=qwen05_gguf.name)
    _assert_same_as_oracle(ours, oracle, SAMPLE)
    assert ours.stop_token_ids == (151643, 151645)  # <|endoftext|>, <|im_end|>
    # Qwen2's own tokenizer normalizes to NFC (transformers' GGUF conversion does not).
    assert ours.encode("cafe\u0301") == ours.encode("caf\u00e9")


def test_identity_follows_the_tokenizer_json_content(smollm2: ModelTokenizer, tmp_path: Path):
    """Cached token counts are keyed by this: same file, same identity; any edit, a new one."""
    copy = tmp_path / "tokenizer.json"
    shutil.copyfile(smollm2.tokenizer_json, copy)
    same = ModelTokenizer(copy, smollm2.spec)
    assert same.identity == smollm2.identity and len(same.identity) == 16
    data = json.loads(copy.read_text())
    data["added_tokens"] = data["added_tokens"][:-1]
    copy.write_text(json.dumps(data))
    assert ModelTokenizer(copy, smollm2.spec).identity != smollm2.identity
