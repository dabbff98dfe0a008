"""Errors a caller can cause while ingesting; the CLI prints each as one line and exits 2."""

from __future__ import annotations


class IngestError(ValueError):
    """Base of every ingest error that is the caller's to fix (bad path, bad file, budget)."""


class SourceError(IngestError):
    """The source does not exist, is not a kind we read, or holds nothing to read."""


class UnsafeArchiveError(IngestError):
    """An archive tries to write outside its target, or breaks a size, count or ratio cap."""


class PdfError(IngestError):
    """A PDF is encrypted without the right password, corrupted, or empty."""


class BudgetError(IngestError):
    """A token budget that cannot hold anything (zero, negative, or below the framing)."""
