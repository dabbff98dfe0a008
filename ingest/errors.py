"""Errors a caller of ingest can cause (bad paths, unsafe archives, unreadable PDFs)."""


class IngestError(ValueError):
    """A source that cannot be read or packed; the message is shown to the user as is."""
