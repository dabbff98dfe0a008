"""Errors a caller of the kernels package can cause (shapes, dtypes, config values)."""


class KernelsUserError(ValueError):
    """A caller's mistake: a bad config value or an input of the wrong shape or dtype."""
