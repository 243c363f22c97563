"""How outcomes become the response's `output` and `logs`."""

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
