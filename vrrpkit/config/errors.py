"""The error raised for a keepalived.conf that cannot be used, with file and line."""

from __future__ import annotations

from collections.abc import Sequence

from vrrpkit.core.errors import ConfigError

__all__ = ["ConfigFileError"]


class ConfigFileError(ConfigError):
    """One or more errors in a keepalived configuration, each naming ``file:line``.

    ``filename``/``line`` locate the first error (``line`` is None for a whole-file problem such
    as a missing file); ``errors`` lists every error found, in file order, so a user can fix
    them all in one go. ``str()`` prints them one per line.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        line: int | None = None,
        errors: Sequence[ConfigFileError] = (),
    ) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.errors: list[ConfigFileError] = list(errors) if errors else [self]
        super().__init__(self._render())

    @property
    def where(self) -> str:
        """``file:line`` (or just ``file``) of this error, empty if unknown."""
        if self.filename is None:
            return ""
        return self.filename if self.line is None else f"{self.filename}:{self.line}"

    def _render(self) -> str:
        if len(self.errors) > 1:
            return "\n".join([self.message, *(f"  {e._render()}" for e in self.errors)])
        return f"{self.where}: {self.message}" if self.where else self.message

    @classmethod
    def combine(cls, errors: Sequence[ConfigFileError]) -> ConfigFileError:
        """One exception for several errors (the error itself when there is only one)."""
        if not errors:
            raise ValueError("combine() needs at least one error")
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        return cls(
            f"{len(errors)} errors in the configuration:",
            filename=first.filename,
            line=first.line,
            errors=errors,
        )
