"""``python -m edgerl``."""

from edgerl.cli import _console_main

_console_main()
