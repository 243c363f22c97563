"""Python client of the IRIS code execution service.

>>> from iris_exec_client import IrisClient
>>> with IrisClient() as iris:  # IRIS_URL and IRIS_API_KEY from the environment
...     print(iris.execute("console.log('hi'); return 1 + 1").result.output)
"""

from iris_exec_client._async import AsyncIrisClient
from iris_exec_client._errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    InternalServerError,
    IrisApiError,
    IrisConnectionError,
    IrisError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from iris_exec_client._models import (
    Closed,
    CodeError,
    ExecuteResponse,
    Execution,
    ExecutionMetadata,
    ExecutionPage,
    ExecutionResult,
    ExecutionStatus,
    ExecutionSummary,
    Language,
    Sandbox,
    SandboxPage,
    SandboxSummary,
    SubmittedExecution,
)
from iris_exec_client._sync import IrisClient

__all__ = [
    "AsyncIrisClient",
    "AuthenticationError",
    "BadRequestError",
    "Closed",
    "CodeError",
    "ConflictError",
    "ExecuteResponse",
    "Execution",
    "ExecutionMetadata",
    "ExecutionPage",
    "ExecutionResult",
    "ExecutionStatus",
    "ExecutionSummary",
    "GoneError",
    "InternalServerError",
    "IrisApiError",
    "IrisClient",
    "IrisConnectionError",
    "IrisError",
    "Language",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Sandbox",
    "SandboxPage",
    "SandboxSummary",
    "ServiceUnavailableError",
    "SubmittedExecution",
    "UnprocessableEntityError",
]
