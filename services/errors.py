"""Errors a caller of the queue can cause; the CLI shows the message as one line, exit 2."""


class ServiceError(Exception):
    """A request the queue cannot honour as asked; the message says what to change."""


class InvalidJob(ServiceError):
    """A job description that cannot be submitted (bad kind, missing field, too large)."""


class JobNotFound(ServiceError):
    """No job with that id (never submitted, or its record expired)."""


class JobStateError(ServiceError):
    """The job is in a state that does not allow the operation (cancel a finished job, ...)."""


class RedisUnavailable(ServiceError):
    """Redis cannot be reached or started."""
