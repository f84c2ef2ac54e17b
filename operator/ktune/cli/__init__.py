"""The `ktune` command line: run, validate, import-katib, and the cluster commands (operator, status, export)."""

from ktune.cli.main import main

__all__ = ["main"]
