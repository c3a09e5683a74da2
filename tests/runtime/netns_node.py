"""A vrrpkit node in its own process, for tests that kill a master with SIGKILL.

Usage: python netns_node.py '{"name": ..., "netns": ..., ...Instance keyword arguments}'
Prints "started" once the instance runs, then runs until killed.
"""

from __future__ import annotations

import json
import sys

import anyio

from vrrpkit import Instance


async def main(kwargs: dict[str, object]) -> None:
    name = str(kwargs.pop("name"))
    async with Instance(name, **kwargs):  # type: ignore[arg-type]
        print("started", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
