"""Local mode: one server process for every route, with jails and SQLite."""
