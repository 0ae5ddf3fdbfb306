"""Defaults several layers share, in a module that imports nothing: the CLI's option
defaults read them while drawing `--help`, which must not load the data model."""

from __future__ import annotations

DEFAULT_SERVE_PORT = 30000  # sglang's HTTP port on rank 0: recipes, serve, forward, generate
