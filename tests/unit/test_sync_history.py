"""Synchronous executions are recorded too (the history the console lists): running while
they run, their answer when done, failed with the reason when the infrastructure ends them,
and never left `running` when their server dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from iris_exec.composition import Services
from iris_exec.domain.errors import Gone, SandboxLost, StoreUnavailable
from iris_exec.domain.models import ExecutionRecord, Principal
from iris_exec.services.commands import ExecuteCommand
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio
ALPHA = Principal("alpha", "key_a")


@pytest.fixture
def container(tmp_path: Path, provider: FakeProvider, clock: MovableClock) -> Services:
    return fake_container(tmp_path, provider, clock)


def command(code: str = "return 1", sandbox_id: str | None = None) -> ExecuteCommand:
    return ExecuteCommand(
        code=code, language="python", timeout_s=30, sandbox_id=sandbox_id, session_id="s-1"
    )


async def test_a_synchronous_answer_is_in_the_history_with_its_code_and_logs(
    container: Services,
) -> None:
    answer = (await container.executions.execute(ALPHA, command("print(1)"))).wire()
    execution_id = answer["result"]["metadata"]["executionId"]
    body = container.background.describe(ALPHA, execution_id).wire()
    assert body["status"] == "succeeded" and body["async"] is False
    assert (body["code"], body["language"], body["sessionId"]) == ("print(1)", "python", "s-1")
    assert body["logs"] == answer["result"]["logs"] and body["result"] == answer["result"]
    listed = container.history.executions(ALPHA, None, None, 10, None).wire()["executions"]
    assert [(e["executionId"], e["success"]) for e in listed] == [(execution_id, True)]


async def test_a_lost_sandbox_is_recorded_failed_with_the_reason(
    container: Services, provider: FakeProvider
) -> None:
    first = (await container.executions.execute(ALPHA, command())).wire()
    provider.fail_run = SandboxLost("the microVM vanished mid-run")
    with pytest.raises(Gone):
        await container.executions.execute(ALPHA, command(sandbox_id=first["sandboxId"]))
    listed = container.history.executions(ALPHA, first["sandboxId"], "failed", 10, None).wire()
    (row,) = listed["executions"]
    body = container.background.describe(ALPHA, row["executionId"]).wire()
    assert body["status"] == "failed" and "reason" in body


async def test_a_cancelled_run_is_recorded_failed(
    container: Services, provider: FakeProvider
) -> None:
    provider.run_delay = 60
    task = asyncio.create_task(container.executions.execute(ALPHA, command()))
    await asyncio.sleep(0.05)
    (running,) = container.history.executions(ALPHA, None, "running", 10, None).wire()["executions"]
    task.cancel()  # the client went away, or the server is stopping
    with pytest.raises(asyncio.CancelledError):
        await task
    assert container.background.describe(ALPHA, running["executionId"]).wire()["status"] == "failed"


async def test_a_run_whose_server_died_is_ended_by_the_sweeper(
    container: Services, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server dies after the code ran, before it could record the end.
    monkeypatch.setattr(container.adapters.execution_store, "finish", lambda *a, **k: False)
    answer = (await container.executions.execute(ALPHA, command())).wire()
    monkeypatch.undo()
    execution_id = answer["result"]["metadata"]["executionId"]
    assert container.background.store.get("alpha", execution_id).status == "running"  # type: ignore[union-attr]
    clock.advance(30 + 30)  # its time limit, and some
    assert container.background.sweep() == 0
    clock.advance(60)  # past the limit and the grace: nobody is running it
    assert container.background.sweep() == 1
    body = container.background.describe(ALPHA, execution_id).wire()
    assert body["status"] == "failed" and "stopped" in body["reason"]


async def test_a_history_that_cannot_record_refuses_and_gives_the_sandbox_back(
    container: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = (await container.executions.execute(ALPHA, command())).wire()

    def down(record: ExecutionRecord) -> None:
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(container.adapters.execution_store, "create", down)
    with pytest.raises(StoreUnavailable):
        await container.executions.execute(ALPHA, command(sandbox_id=first["sandboxId"]))
    record = container.adapters.registry.get("alpha", first["sandboxId"])
    assert record is not None and record.lease_id is None  # free for the next request
