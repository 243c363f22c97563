"""One Lambda invocation in a process of its own: ``python -m tests.support.lambda_worker
functions/<name>`` with the event on stdin; prints what the handler returned."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from tests.support.events import LambdaContext


def main() -> None:
    function = Path(sys.argv[1])
    event = json.load(sys.stdin)
    spec = importlib.util.spec_from_file_location("app", function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.handler(event, LambdaContext(function_name=f"iris-{function.name}"))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
