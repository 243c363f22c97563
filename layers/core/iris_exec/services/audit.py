"""The audit trail: who ran what, where, when, for how long, with what outcome, and every
change of a sandbox's life. Queryable per project; kept for IRIS_AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from iris_exec.domain.models import AuditEvent, AuditKind, ExecutionReport, Principal
from iris_exec.domain.ports import AuditLog, ExecutionObserver
from iris_exec.services.answers import AuditEntry, AuditPage
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.services.output import LABEL_CHARS

MAX_LIMIT = 500
SYSTEM = "system"


class AuditTrail:
    """An ExecutionObserver that also records sandbox lifecycle changes."""

    def __init__(self, log: AuditLog, clock: Clock, retention_s: float) -> None:
        self._log = log
        self._clock = clock
        self._retention_s = retention_s

    def executed(self, report: ExecutionReport) -> None:
        self._log.record(
            AuditEvent(
                event_id=new_id("au_"),
                project_id=report.project_id,
                at=report.started_at,
                kind="execution",
                actor=report.actor,
                sandbox_id=report.sandbox_id,
                execution_id=report.execution_id,
                duration_ms=round(report.execution_ms + report.setup_ms, 1),
                outcome=report.outcome,
                output_bytes=report.output_bytes,
                # The program's error name, bounded: what it says, never the outcome.
                detail=report.error_name[:LABEL_CHARS] if report.error_name else None,
            )
        )

    def sandbox(
        self,
        kind: AuditKind,
        project_id: str,
        sandbox_id: str,
        actor: str = SYSTEM,
        detail: str | None = None,
    ) -> None:
        self._log.record(
            AuditEvent(
                event_id=new_id("au_"),
                project_id=project_id,
                at=self._clock(),
                kind=kind,
                actor=actor,
                sandbox_id=sandbox_id,
                detail=detail,
            )
        )

    def query(
        self, principal: Principal, since: float | None, until: float | None, limit: int
    ) -> AuditPage:
        events = self._log.query(principal.project_id, since, until, min(limit, MAX_LIMIT))
        return AuditPage(
            events=[
                AuditEntry(
                    id=e.event_id,
                    at=iso(e.at),
                    kind=e.kind,
                    actor=e.actor,
                    sandbox_id=e.sandbox_id,
                    execution_id=e.execution_id,
                    duration_ms=e.duration_ms,
                    outcome=e.outcome,
                    output_bytes=e.output_bytes,
                    detail=e.detail,
                )
                for e in events
            ],
            timestamp=iso(self._clock()),
        )

    def purge(self) -> int:
        return self._log.purge(self._clock() - self._retention_s)


class Observers:
    """Several ExecutionObservers as one."""

    def __init__(self, *observers: ExecutionObserver | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def executed(self, report: ExecutionReport) -> None:
        for observer in self._observers:
            observer.executed(report)
