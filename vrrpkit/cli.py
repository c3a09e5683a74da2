"""The ``vrrpkit`` command: ``run``, ``check`` and ``status`` for a keepalived.conf.

``vrrpkit run -f /etc/keepalived/keepalived.conf`` runs the VRRP instances in the foreground
(SIGTERM/SIGINT: graceful stop; SIGHUP: reload). ``vrrpkit check -f FILE`` validates it and
prints the effective configuration. ``vrrpkit status [--json]`` asks the running daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import anyio

from vrrpkit.control import DEFAULT_CONTROL_PATH, ControlError, query_sync

__all__ = ["main"]

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrrpkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the VRRP instances of a keepalived.conf")
    run.add_argument(
        "-f",
        "--use-file",
        dest="config",
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )
    run.add_argument(
        "-i", "--config-id", default=None, help="keepalived's config id, for @id conditional lines"
    )
    run.add_argument(
        "--control",
        default=DEFAULT_CONTROL_PATH,
        help=f"control socket path (default {DEFAULT_CONTROL_PATH})",
    )
    run.add_argument(
        "--netns", default=None, help="network namespace the interfaces live in (default: our own)"
    )
    run.add_argument(
        "-l",
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level",
    )

    check = commands.add_parser("check", help="validate a keepalived.conf and print it")
    check.add_argument("-f", "--use-file", dest="config", default=DEFAULT_CONFIG)
    check.add_argument("-i", "--config-id", default=None)

    status = commands.add_parser("status", help="show the running daemon's live state")
    status.add_argument("--json", action="store_true", help="print the raw JSON document")
    status.add_argument("--control", default=DEFAULT_CONTROL_PATH)
    return parser


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Drop ``logger``'s records below ERROR for the duration of the block."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cmd_check(args: argparse.Namespace) -> int:
    from vrrpkit.config import ConfigFileError, build_instances, describe, load

    try:
        config = load(args.config, config_id=args.config_id)
        # Building catches what only it finds (ranges, families); the warnings it logs for
        # `run` are part of the report printed below, so they are not printed twice.
        with _quiet(logging.getLogger("vrrpkit.config")):
            build_instances(config)
    except ConfigFileError as exc:
        print(f"{args.config}: configuration is invalid:\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    print(describe(config))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from vrrpkit.config import ConfigFileError
    from vrrpkit.service import Daemon

    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s[%(process)d]: %(message)s",
    )
    options: dict[str, Any] = {}
    if args.netns:
        options["netns"] = args.netns
    daemon = Daemon(
        args.config,
        control_path=args.control,
        config_id=args.config_id,
        freeze_gc=True,
        **options,
    )
    try:
        anyio.run(daemon.run)
    except ConfigFileError as exc:
        print(f"{args.config}: configuration is invalid, nothing started:\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"vrrpkit: {exc}", file=sys.stderr)
        return 1
    return 0


def _format_status(status: dict[str, Any]) -> str:
    lines = [f"vrrpkit pid {status['pid']}, config {status['config']}, reloads {status['reloads']}"]
    for inst in status["instances"]:
        lines.append(
            f"{inst['name']}: {inst['state']} on {inst['interface']} vrid {inst['vrid']} "
            f"v{inst['version']}, priority {inst['effective_priority']} "
            f"(base {inst['base_priority']}), master {inst['master_address']} "
            f"(priority {inst['master_priority']}), VIPs held {inst['vips_held'] or 'none'}"
        )
        for name, tracker in inst["trackers"].items():
            ok = {True: "OK", False: "FAILED", None: "pending"}[tracker["ok"]]
            lines.append(
                f"    tracker {name}: {ok}, weight {tracker['weight']}, "
                f"contributes {tracker['contribution']:+d}"
            )
        counters = inst["counters"]
        lines.append("    counters: " + ", ".join(f"{k} {v}" for k, v in counters.items() if v))
    for group in status["groups"]:
        lines.append(f"group {group['name']}: {group['state']} ({', '.join(group['members'])})")
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        status = query_sync("status", args.control)
    except ControlError as exc:
        print(f"vrrpkit: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else _format_status(status))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vrrpkit`` console script and of ``python -m vrrpkit``."""
    args = _parser().parse_args(argv)
    # A configuration is read with undecodable bytes kept as surrogates (as keepalived keeps
    # bytes); printed back, they are those bytes again, not a UnicodeEncodeError.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if callable(reconfigure):
        reconfigure(errors="surrogateescape")
    handler = {"run": _cmd_run, "check": _cmd_check, "status": _cmd_status}[args.command]
    return handler(args)
