"""How outcomes become the response's `output` and `logs`."""

from typing import Any

from iris_exec.domain.models import CodeError, OutputChunk, RunOutcome
from iris_exec.services.output import log_lines, sections


def test_sections_in_contract_order_and_only_when_present() -> None:
    outcome = RunOutcome(
        output=[
            OutputChunk("stdout", "a\n"),
            OutputChunk("stderr", "warn\n"),
            OutputChunk("stdout", "b\n"),
        ],
        value_json='{\n  "x": 1\n}',
        error=CodeError("TypeError", "bad", "TypeError: bad\n    at main.ts:1:1"),
    )
    assert sections(outcome) == (
        '=== Results ===\n{\n  "x": 1\n}\n\n'
        "=== Output ===\na\nb\n\n"
        "=== Errors ===\nwarn\nTypeError: bad\n    at main.ts:1:1"
    )


def test_empty_outcome_says_no_output() -> None:
    assert sections(RunOutcome(succeeded=True)) == "(no output)"


def test_error_without_stack_is_named() -> None:
    outcome = RunOutcome(error=CodeError("TimeoutError", "Execution timed out after 1 s"))
    assert sections(outcome) == "=== Errors ===\nTimeoutError: Execution timed out after 1 s"


def test_logs_are_one_line_each_in_written_order() -> None:
    chunks = [
        OutputChunk("stdout", "one\ntwo\n"),
        OutputChunk("stderr", "oops\r\n"),
        OutputChunk("stdout", "partial"),
        OutputChunk("stderr", "\n"),
    ]
    assert log_lines(chunks) == [
        "[stdout] one",
        "[stdout] two",
        "[stderr] oops",
        "[stdout] partial",
        "[stderr] ",
    ]


def test_an_answer_under_the_limit_is_untouched() -> None:
    from iris_exec.services.output import fit_answer

    body = {"result": {"output": "=== Output ===\nhi", "logs": ["[stdout] hi"], "metadata": {}}}
    assert fit_answer(body, 10_000) is body


def test_log_lines_go_first_then_the_end_of_the_output() -> None:
    from iris_exec.services.output import fit_answer, wire_size

    lines = [f"[stdout] {'x' * 50} {i}" for i in range(2000)]
    output = "=== Output ===\n" + "\n".join(lines)
    body: dict[str, Any] = {
        "success": True,
        "result": {
            "output": output,
            "logs": lines,
            "metadata": {"outputTruncated": False},
        },
    }
    fitted = fit_answer(body, wire_size(body) - 1000)  # a few lines too long
    assert wire_size(fitted) <= wire_size(body) - 1000
    assert fitted["result"]["metadata"] == {"outputTruncated": False, "logsTruncated": True}
    assert fitted["result"]["logs"] == lines[: len(fitted["result"]["logs"])]
    assert len(fitted["result"]["logs"]) > 1900
    assert fitted["result"]["output"] == output  # whole
    small = fit_answer(body, 60_000)  # not even the output fits whole
    assert small["result"]["logs"] == [] and wire_size(small) <= 60_000
    assert small["result"]["metadata"]["outputTruncated"] is True
    assert output.startswith(small["result"]["output"])
    assert body["result"]["logs"] is lines  # the caller's answer is not changed


def test_a_page_of_log_lines_shrinks_with_its_cursor_and_keeps_one_line() -> None:
    from iris_exec.services.output import fit_answer, wire_size

    page = [f"[stdout] {'y' * 100}" for _ in range(500)]
    body = {"status": "running", "logs": page, "cursor": 1500}
    fitted = fit_answer(body, 10_000)
    kept = len(fitted["logs"])
    assert 1 <= kept < 500 and wire_size(fitted) <= 10_000
    assert fitted["cursor"] == 1000 + kept  # the next poll starts at the first line left out
    tiny = fit_answer(body, 100)
    assert len(tiny["logs"]) == 1 and tiny["cursor"] == 1001  # polling always moves on
    assert page[0].startswith(tiny["logs"][0]) and wire_size(tiny) <= 100
