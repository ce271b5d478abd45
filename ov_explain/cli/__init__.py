"""The ``ov-explain`` command line: the only package that imports everything and talks to the terminal.

:mod:`.app` holds the group, the exit statuses and signal handling; :mod:`.options` the options several
commands share; each other module is one command (or two close ones) that parses, calls the library and
prints."""

from ov_explain.cli import audit, devices, drift, explain, export, export_xai, inspect, predict  # noqa: F401 (registers the commands)
from ov_explain.cli.app import EXIT_GATE, EXIT_OK, EXIT_PARTIAL, EXIT_SETUP, EXIT_UNEXPECTED, main

__all__ = ["EXIT_GATE", "EXIT_OK", "EXIT_PARTIAL", "EXIT_SETUP", "EXIT_UNEXPECTED", "main"]
