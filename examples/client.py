"""Runs the seed's first example through the Python client, then follows a longer program
line by line, reuses its sandbox and closes it.

    IRIS_URL=http://127.0.0.1:8000 IRIS_API_KEY=sk_live_... python examples/client.py

Needs the client library: `pip install ./clients/python` (in this repository's .venv it is
installed by `make setup`)."""

from pathlib import Path

from iris_exec_client import IrisClient

HERE = Path(__file__).parent
TICKS = """\
for (let i = 1; i <= 3; i++) {
  console.log(`tick ${i}`);
  await new Promise((r) => setTimeout(r, 1000));
}
return 'done';
"""

with IrisClient() as iris:  # IRIS_URL and IRIS_API_KEY from the environment
    answer = iris.execute((HERE / "code" / "pattern-discovery.ts").read_text())
    print(answer.result.output)
    sandbox_id = answer.sandbox_id
    assert sandbox_id is not None

    job = iris.submit(TICKS, sandbox_id=sandbox_id)
    for line in iris.stream_logs(job.execution_id):  # each line as it is printed
        print(line)
    finished = iris.get_execution(job.execution_id)
    print("status:", finished.status)

    python = iris.execute("print('hello from Python')", language="python", sandbox_id=sandbox_id)
    print(python.result.output)

    print("sandbox active:", iris.get_sandbox(sandbox_id).active)
    print(iris.close_sandbox(sandbox_id).message)
