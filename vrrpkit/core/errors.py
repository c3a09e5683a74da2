"""Exceptions raised by the core for local misuse (bad configuration values).

Remote garbage (malformed packets) is reported through :class:`vrrpkit.PacketError` and
counted by the router; it never raises out of a router input method.
"""

from __future__ import annotations

__all__ = ["ConfigError", "VrrpError"]


class VrrpError(Exception):
    """Base class of every exception vrrpkit raises on purpose."""


class ConfigError(VrrpError, ValueError):
    """A configuration value is out of range or inconsistent; the message says which and why."""
