"""The error hierarchy. Each class carries its exit code; cli.main() maps them in one place.

A divergence is not an error: it is a verdict, carried as data in the report (exit 1).
"""

from __future__ import annotations

from cpython_repro.text import one_line


class ReproError(Exception):
    """Base class. The message is one line naming the cause and, where known, the fix."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        # Messages quote member and file names, which may hold newlines or ESC.
        return one_line(f"{self.message} ({self.hint})" if self.hint else self.message)


class InputError(ReproError):
    """The user asked for something that does not exist or is malformed: exit 2."""

    exit_code = 2


class BadVersion(InputError):
    pass


class NoRecipe(InputError):
    pass


class TagNotFound(InputError):
    pass


class ArtifactNotFound(InputError):
    pass


class EnvironmentFailure(ReproError):
    """The machine could not do the work (Docker, network, disk, tools): exit 3."""

    exit_code = 3


class DockerUnavailable(EnvironmentFailure):
    pass


class NetworkError(EnvironmentFailure):
    pass


class DownloadIncomplete(NetworkError):
    pass


class Offline(NetworkError):
    """--offline, and what was asked for is not already here."""


class DockerRefused(EnvironmentFailure):
    """The daemon answered, with an error of its own (kept in the message)."""


class ToolMissing(EnvironmentFailure):
    pass


class ToolFailed(EnvironmentFailure):
    """An external command failed; stderr's tail is kept in the message."""


class OutputError(EnvironmentFailure):
    """A report or other output could not be written where asked; names that path."""


class RebuildFailed(EnvironmentFailure):
    """The recipe's steps failed inside the container; the log is kept at log_path."""

    def __init__(self, message: str, *, log_path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.log_path = log_path


class ArchiveError(ReproError):
    """An archive could not be read (truncated, malformed or hostile): exit 1, never a pass."""

    exit_code = 1


EXIT_OK = 0
EXIT_DIVERGENCE = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3
