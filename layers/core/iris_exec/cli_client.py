"""The CLI's client of the HTTP API: `iris-exec run`, and the commands that list, show,
follow and close sandboxes and executions and read the audit trail.

Against a server (the local one of this data directory, or `--url`/`IRIS_URL` with
`IRIS_API_KEY`), the run is asynchronous under the hood: its log lines are followed live
(Server-Sent Events where the server has them, cursor polling where it does not, as on
AWS) and the answer is shown at the end. With no server, it runs in this process, its
output streamed the same way.

Exit codes: 0 the code succeeded; 1 the code failed (an error, a timeout); 2 a usage
error (arguments, an unreadable file, bad settings); 3 the service refused or failed."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_exec.domain.models import Language, OutputChunk

EXIT_OK, EXIT_CODE_FAILED, EXIT_USAGE, EXIT_SERVICE = 0, 1, 2, 3
SUFFIXES: dict[str, Language] = {
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".py": "python",
}  # fmt: skip
POLL_S = 0.5


class UsageError(Exception):
    """The command line asks for something impossible; the message says what to change."""


class ServiceError(Exception):
    """The service answered with an error, or could not be reached."""


def checked_url(url: str) -> str:
    """A service URL a key may be sent to: https, or http to this machine only (a key sent
    in the clear across a network is a key given away)."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
        raise UsageError(f"{url} is plain http to another machine; use https")
    raise UsageError(f"{url} is not an http(s) URL of the service")


def language_of(file: str, given: str | None) -> Language:
    """--language, else the file's suffix; stdin without --language is TypeScript."""
    if given is not None:
        return given  # type: ignore[return-value]  # argparse choices
    if file == "-":
        return "typescript"
    language = SUFFIXES.get(Path(file).suffix.lower())
    if language is None:
        raise UsageError(
            f"cannot tell the language of {file} from its suffix; pass --language"
            " typescript, javascript or python"
        )
    return language


def read_code(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not UTF-8 text") from None


def parse_context(text: str | None) -> dict[str, Any] | None:
    """--context '{"a": 1}' or --context @file.json."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the context file {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--context is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--context must be a JSON object")
    return value


# -- showing a run --------------------------------------------------------------------------


def show_chunk(chunk: OutputChunk) -> None:
    """Output as the program prints it: its stdout to ours, its stderr to ours."""
    stream = sys.stdout if chunk.stream == "stdout" else sys.stderr
    stream.write(chunk.text)
    stream.flush()


def show_line(line: str) -> None:
    stream, _, text = line.partition("] ")
    target = sys.stderr if stream == "[stderr" else sys.stdout
    print(text, file=target, flush=True)


def results_section(output: str) -> str:
    """The `=== Results ===` section of an answer's output (the rest was streamed)."""
    if not output.startswith("=== Results ==="):
        return ""
    return output.split("\n\n=== ", 1)[0]


def show_answer(answer: dict[str, Any], *, streamed: bool) -> int:
    """The end of a run: the returned value, the error, a one-line summary."""
    result = answer["result"]
    if streamed:
        section = results_section(str(result.get("output") or ""))
        if section:
            print(section, flush=True)  # noqa: T201
    else:
        print(result["output"], flush=True)  # noqa: T201
    error = result.get("error")
    if streamed and isinstance(error, dict):
        print(error.get("stack") or f"{error.get('name')}: {error.get('message')}", file=sys.stderr)  # noqa: T201
    meta = result.get("metadata") or {}
    status = "ok" if result["success"] else f"failed: {(error or {}).get('name', 'Error')}"
    created = "new" if meta.get("sandboxCreated") else "reused"
    print(  # noqa: T201
        f"\n-- {status} | code {result.get('executionTime', 0)} ms, setup"
        f" {meta.get('setupTime', 0)} ms | sandbox {answer.get('sandboxId')} ({created})"
        f" | project {meta.get('projectId')}",
        file=sys.stderr,
    )
    return EXIT_OK if result["success"] else EXIT_CODE_FAILED


# -- against a server ------------------------------------------------------------------------


@dataclass
class Api:
    """The HTTP API with one key (the standard library only: no client to install)."""

    url: str
    key: str
    timeout_s: float = 60.0

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        request = urllib.request.Request(  # noqa: S310 - the URL the user gave
            self.url.rstrip("/") + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, {"message": exc.reason}
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc}") from None

    def events(self, path: str) -> Iterator[tuple[str, Any]] | None:
        """Server-Sent Events of ``path`` as (event, data); None where there are none."""
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        request = urllib.request.Request(self.url.rstrip("/") + path, headers=headers)  # noqa: S310
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 405):  # API Gateway: no streaming route
                return None
            raise ServiceError(f"{exc.code}: {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc}") from None

        def read() -> Iterator[tuple[str, Any]]:
            with response:
                event, data = "message", ""
                for raw in response:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if data:
                            yield event, json.loads(data)
                        event, data = "message", ""
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data += line[6:]

        return read()


def refused(status: int, body: Any) -> ServiceError:
    message = body.get("message") if isinstance(body, dict) else None
    request_id = body.get("requestId") if isinstance(body, dict) else None
    suffix = f" (requestId {request_id})" if request_id else ""
    return ServiceError(f"{status}: {message or 'the service refused the request'}{suffix}")


def run_on_server(api: Api, payload: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        status, answer = api.request("POST", "/api/iris/execute", payload)
        if status != 200:
            raise refused(status, answer)
        print(json.dumps(answer, indent=2))  # noqa: T201
        return EXIT_OK if answer.get("success") else EXIT_CODE_FAILED
    status, started = api.request("POST", "/api/iris/execute", {**payload, "async": True})
    if status != 202:
        raise refused(status, started)
    return follow(api, f"/api/iris/executions/{started['executionId']}")


def follow(api: Api, execution: str) -> int:
    """Show an execution's log lines as they come (SSE, else cursor polling), then its
    answer."""
    events = api.events(execution + "/events")
    final: dict[str, Any] | None = None
    if events is not None:
        for event, data in events:
            if event == "log":
                show_line(str(data["line"]))
            elif event == "done":
                final = data
                break
    else:
        cursor = 0
        while final is None:
            status, body = api.request("GET", f"{execution}?after={cursor}")
            if status != 200:
                raise refused(status, body)
            for line in body["logs"]:
                show_line(str(line))
            cursor = body["cursor"]
            if body["status"] not in ("queued", "running"):
                final = body
            else:
                time.sleep(POLL_S)
    if final is None:
        raise ServiceError("the stream of the execution ended before its answer")
    if "result" not in final:
        raise ServiceError(f"execution {final.get('executionId')}: {final.get('reason')}")
    return show_answer({**final, "sandboxId": final.get("sandboxId")}, streamed=True)


# -- sandboxes, executions, audit ---------------------------------------------------------


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """A plain table on stdout: header, then one line per row."""
    cells = [
        [str(row.get(key) if row.get(key) is not None else "-") for key, _ in columns]
        for row in rows
    ]
    widths = [
        max([len(title), *(len(r[i]) for r in cells)]) for i, (_, title) in enumerate(columns)
    ]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)))  # noqa: T201
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())  # noqa: T201


def _get(api: Api, path: str) -> Any:
    status, body = api.request("GET", path)
    if status != 200:
        raise refused(status, body)
    return body


def _query(**params: Any) -> str:
    from urllib.parse import urlencode

    given = {k: v for k, v in params.items() if v is not None}
    return "?" + urlencode(given) if given else ""


def sandboxes_list(api: Api, status: str | None, as_json: bool) -> int:
    body = _get(api, "/api/iris/sandboxes" + _query(status=status, limit=100))
    if as_json:
        print(json.dumps(body, indent=2))  # noqa: T201
        return EXIT_OK
    columns = [("sandboxId", "SANDBOX"), ("status", "STATUS"), ("createdAt", "CREATED"),
               ("lastUsedAt", "LAST USED"), ("expiresAt", "EXPIRES")]  # fmt: skip
    _table(body["sandboxes"], columns)
    return EXIT_OK


def sandboxes_close(api: Api, sandbox_id: str | None, close_all: bool) -> int:
    path = "/api/iris/sandbox" + (_query(all="true") if close_all else _query(sandboxId=sandbox_id))
    status, body = api.request("DELETE", path)
    if status != 200:
        raise refused(status, body)
    print(body.get("message"), file=sys.stderr)  # noqa: T201
    return EXIT_OK


def executions_list(api: Api, sandbox_id: str | None, status: str | None, as_json: bool) -> int:
    body = _get(
        api, "/api/iris/executions" + _query(sandboxId=sandbox_id, status=status, limit=100)
    )
    if as_json:
        print(json.dumps(body, indent=2))  # noqa: T201
        return EXIT_OK
    columns = [
        ("executionId", "EXECUTION"), ("status", "STATUS"), ("language", "LANGUAGE"),
        ("sandboxId", "SANDBOX"), ("createdAt", "CREATED"), ("executionTime", "MS"),
    ]  # fmt: skip
    _table(body["executions"], columns)
    return EXIT_OK


def executions_show(api: Api, execution_id: str) -> int:
    body = _get(api, f"/api/iris/executions/{execution_id}")
    print(json.dumps(body, indent=2))  # noqa: T201
    return EXIT_OK


def executions_follow(api: Api, execution_id: str) -> int:
    """Its log lines from the first, live until it ends, then its answer."""
    return follow(api, f"/api/iris/executions/{execution_id}")


def audit(api: Api, since: str | None, until: str | None, limit: int, as_json: bool) -> int:
    body = _get(api, "/api/iris/audit" + _query(since=since, until=until, limit=limit))
    if as_json:
        print(json.dumps(body, indent=2))  # noqa: T201
        return EXIT_OK
    entries = body["events"]
    columns = [
        ("at", "AT"), ("kind", "KIND"), ("sandboxId", "SANDBOX"),
        ("executionId", "EXECUTION"), ("outcome", "OUTCOME"), ("actor", "ACTOR"),
    ]  # fmt: skip
    _table(entries, columns)
    return EXIT_OK
