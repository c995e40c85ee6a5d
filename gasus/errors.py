"""Errors a user can act on. Only the CLI turns them into a one-line message and exit code 2."""

from __future__ import annotations


class GasusError(Exception):
    """Base class of every error gasus reports to a user."""


class BadInputError(GasusError):
    """A file, option or record the user gave cannot be used as it is."""


class OutputConflictError(BadInputError):
    """An output would overwrite an input, another output of the same command, or the cache."""


class OutputPathError(BadInputError):
    """An output cannot be written where it is asked: its directory is missing, not a directory, or read-only."""


class BackendError(GasusError):
    """A model backend could not be created or could not answer."""


class MissingDependencyError(GasusError):
    """An optional package is needed for this code path and is not installed."""

    def __init__(self, package: str, purpose: str, pip_name: str | None = None):
        self.package = package
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install {pip_name or package}"
        )


class CacheError(GasusError):
    """The cache directory cannot be used."""


class CacheMissError(GasusError):
    """A response was required from the cache or a recording and is not there."""


class GasusWarning(UserWarning):
    """Something a user should know that does not stop the run (a batch journal skipped);
    the CLI shows each as one `Warning: ...` line on stderr."""
