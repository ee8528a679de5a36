"""The command line, one module per group of commands; `main` parses and hands off (app/__main__.py)."""

from app.entrypoints.cli.main import main

__all__ = ["main"]
