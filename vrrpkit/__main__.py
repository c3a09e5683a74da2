"""``python -m vrrpkit``: the same as the ``vrrpkit`` command."""

from vrrpkit.cli import main

raise SystemExit(main())
