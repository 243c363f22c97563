"""A local, wire-compatible stand-in for E2B (control-plane API and envd) for tests.

Point the unmodified SDK (``e2b``, ``e2b_code_interpreter``) at it with the
environment ``E2BStandIn.env`` gives (``E2B_API_KEY``, ``E2B_API_URL`` and
``E2B_SANDBOX_URL`` set to the stand-in, ``E2B_DEBUG=false``), or pass
``E2BStandIn.api_params`` as keyword options. Inspect what the SDK did through
``sandboxes`` / ``create_requests``; inject faults with ``fail_next_create``,
``rate_limit_next``, ``kill_behind_our_back`` and ``expire``.

See ``server.py`` for what is served and how.
"""

from tests.support.e2b_standin.records import (
    CommandRecord,
    CreateRequestRecord,
    SandboxRecord,
)
from tests.support.e2b_standin.server import DEFAULT_API_KEY, E2BStandIn

__all__ = [
    "DEFAULT_API_KEY",
    "CommandRecord",
    "CreateRequestRecord",
    "E2BStandIn",
    "SandboxRecord",
]
