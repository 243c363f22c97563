"""Embedded storage for local mode: one SQLite file for registry, keys, rate windows
and tool data."""
