"""keepalived-compatible notify programs: which argv runs for which state change."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from vrrpkit.core.errors import ConfigError
from vrrpkit.core.states import State

__all__ = ["NotifyScripts", "state_word"]

_WORDS = {
    State.MASTER: "MASTER",
    State.BACKUP: "BACKUP",
    State.FAULT: "FAULT",
    State.STOPPED: "STOP",
}


def state_word(state: State) -> str | None:
    """The word keepalived passes for ``state`` (None for INIT, which is never notified)."""
    return _WORDS.get(state)


def _argv(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"notify programs are argv lists, not shell strings: {value!r}")
    argv = tuple(value)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError(f"a notify argv must be a non-empty list of str, got {value!r}")
    return argv


@attrs.frozen(kw_only=True)
class NotifyScripts:
    """The notify programs of one instance or group, run without a shell.

    For each change, keepalived's order: the state's own program with only its own arguments,
    then the generic ``notify`` with ``INSTANCE|GROUP name STATE priority`` appended.
    """

    notify: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)
    master: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)
    backup: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)
    fault: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)
    stop: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)

    def commands(self, kind: str, name: str, new: State, priority: int) -> list[tuple[str, ...]]:
        """The argvs to run, in order, for ``name`` (an ``INSTANCE`` or ``GROUP``) entering
        ``new``; a group reports priority 0 as keepalived does."""
        word = state_word(new)
        if word is None:
            return []
        own = {
            State.MASTER: self.master,
            State.BACKUP: self.backup,
            State.FAULT: self.fault,
            State.STOPPED: self.stop,
        }[new]
        commands = [own] if own is not None else []
        if self.notify is not None:
            commands.append((*self.notify, kind, name, word, str(priority)))
        return commands

    def __bool__(self) -> bool:
        return any(
            v is not None for v in (self.notify, self.master, self.backup, self.fault, self.stop)
        )
