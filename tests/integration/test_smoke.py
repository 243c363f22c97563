"""`iris-exec smoke`, the check a user runs right after `sam deploy`, against the real local
server: every route passes, and a deployment that is wrong fails it."""

from __future__ import annotations

from tests.support.server import LocalServer


def test_smoke_passes_against_the_local_server(server: LocalServer) -> None:
    key = server.create_key("smoke")
    done = server.cli("smoke", "--url", server.url, "--key", key, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = done.stdout.strip().splitlines()
    assert rows[0].startswith("CHECK")
    assert rows[-1] == "15/15 passed"
    for name in ("execute (async) + poll", "mcp tools/call", "CORS preflight", "sandbox delete"):
        assert any(row.startswith(name) and "  pass  " in row for row in rows), name


def test_smoke_fails_with_a_key_that_does_not_work(server: LocalServer) -> None:
    done = server.cli("smoke", "--url", server.url, "--key", "sk_live_" + "x" * 43, timeout=300)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "FAILED" in done.stdout.strip().splitlines()[-1]
    # What needs no key still answers as it should.
    assert any(r.startswith("no key (401)") and "  pass  " in r for r in done.stdout.splitlines())
