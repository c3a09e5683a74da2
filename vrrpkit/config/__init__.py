"""keepalived.conf → vrrpkit: read the VRRP part of a keepalived configuration, unchanged.

``load("/etc/keepalived/keepalived.conf")`` gives a pure :class:`KeepalivedConfig` with
keepalived's defaults and corrections applied; :func:`build_instances` turns it into
:class:`vrrpkit.Instance` objects; :func:`describe` explains the result, including every line
vrrpkit ignores and why (``vrrpkit check``).
"""

from vrrpkit.config.build import build_instance, build_instances, effective_tracking, load, loads
from vrrpkit.config.describe import describe
from vrrpkit.config.errors import ConfigFileError
from vrrpkit.config.model import (
    Diagnostic,
    GlobalDefs,
    GroupDef,
    Ignored,
    InstanceDef,
    KeepalivedConfig,
    Location,
    NotifyDef,
    ScriptDef,
    TrackInterface,
    TrackScript,
    VipDef,
)

__all__ = [
    "ConfigFileError",
    "Diagnostic",
    "GlobalDefs",
    "GroupDef",
    "Ignored",
    "InstanceDef",
    "KeepalivedConfig",
    "Location",
    "NotifyDef",
    "ScriptDef",
    "TrackInterface",
    "TrackScript",
    "VipDef",
    "build_instance",
    "build_instances",
    "describe",
    "effective_tracking",
    "load",
    "loads",
]
