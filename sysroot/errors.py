"""The one error type users see.

Library code raises SysrootError (or a subclass) for every expected failure; the CLI
turns it into one line on stderr. Anything else is a bug and shows a traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class SysrootError(Exception):
    """An expected failure, reported to the user as one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __reduce__(
        self,
    ) -> tuple[Callable[..., SysrootError], tuple[type[SysrootError], str, dict[str, object]]]:
        # Pull workers are processes and send their errors to the parent pickled. The
        # default pickling calls cls(*args), which the subclasses' own __init__
        # signatures (and the keyword-only hint) do not fit.
        return _rebuild, (type(self), str(self), self.__dict__)


class UsageError(SysrootError):
    """Bad command-line usage or bad input values."""

    exit_code = 2


class FormatError(SysrootError):
    """A serialized object, file or config that does not parse."""


class CorruptObjectError(SysrootError):
    """An object whose content does not match its name, or that cannot be read."""

    def __init__(self, checksum: str, objtype: str, problem: str):
        super().__init__(f"Corrupted {objtype} object {checksum}: {problem}")
        self.checksum = checksum
        self.objtype = objtype
        self.problem = problem


class NotFoundError(SysrootError):
    """A ref, revision, object or path that does not exist."""


def _rebuild(cls: type[SysrootError], message: str, state: dict[str, object]) -> SysrootError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
