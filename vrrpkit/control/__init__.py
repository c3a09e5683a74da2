"""The local control socket: live status without keepalived's signal-and-tempfile dance.

A daemon (``vrrpkit run``) listens on a Unix socket (mode 0600, so only its owner and root
can ask); ``vrrpkit status`` or :func:`query` sends one command and reads one JSON reply.
"""

from vrrpkit.control.protocol import (
    DEFAULT_CONTROL_PATH,
    ControlError,
    ControlServer,
    query,
    query_sync,
)

__all__ = ["DEFAULT_CONTROL_PATH", "ControlError", "ControlServer", "query", "query_sync"]
