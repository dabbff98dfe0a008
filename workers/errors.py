"""Errors a caller can cause when configuring the engine or submitting requests.

The CLI turns every `EngineError` into one line and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every user-facing engine error."""


class EngineConfigError(EngineError):
    """An engine setting is out of range or does not fit the model or the device."""


class RequestError(EngineError):
    """A request cannot be served: empty or too long prompt, bad sampling parameters."""
