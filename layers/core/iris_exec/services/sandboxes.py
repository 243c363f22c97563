"""Sandbox lifecycle: create (within the project's quota, evicting the least recently used
idle sandbox), lease for one execution at a time, describe, close, reap idle ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from iris_exec.domain.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    ProviderUnavailable,
    SandboxLost,
    ServiceUnavailable,
    TooManyRequests,
)
from iris_exec.domain.models import (
    AuditKind,
    GoneReason,
    Principal,
    SandboxRecord,
    SandboxStatus,
)
from iris_exec.domain.ports import SandboxProvider, SandboxRegistry
from iris_exec.services.answers import SandboxView
from iris_exec.services.audit import SYSTEM, AuditTrail
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_ID_PATTERN = re.compile(r"^sb_[A-Za-z0-9]{8,64}$")
#: A lease outlives its execution's deadline by this much, then anyone may take it: longer
#: than a provider may still be stopping a run that hit its limit (E2B: 10 s for the
#: runner to stop, then a cleanup command of up to 30 s), so that a late cleanup never
#: lands in the next execution.
LEASE_GRACE_S = 60.0
WAIT_POLL_S = 0.5
GONE_EVENTS: dict[GoneReason, AuditKind] = {
    GoneReason.CLOSED: "sandbox.closed",
    GoneReason.EXPIRED: "sandbox.expired",
    GoneReason.EVICTED: "sandbox.evicted",
    GoneReason.FAILED: "sandbox.failed",
}


def validate_sandbox_id(sandbox_id: str) -> str:
    if not SANDBOX_ID_PATTERN.fullmatch(sandbox_id):
        raise BadRequest("sandboxId must look like 'sb_' followed by 8-64 letters or digits")
    return sandbox_id


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to run one execution in a sandbox."""

    record: SandboxRecord
    lease_id: str
    created: bool
    create_ms: float


def _gone(record: SandboxRecord) -> Gone:
    reason = record.closed_reason or GoneReason(record.status.value)
    why = {
        GoneReason.CLOSED: "was closed",
        GoneReason.EXPIRED: "expired after being idle or reaching its maximum lifetime",
        GoneReason.EVICTED: "was closed to make room for a new sandbox (project quota)",
        GoneReason.FAILED: "failed",
    }[reason]
    detail = f" ({record.detail})" if record.detail else ""
    return Gone(
        f"Sandbox {record.sandbox_id} {why}{detail}; omit sandboxId to get a new one",
        reason=reason.value,
        at=iso(record.closed_at),
    )


def summary_fields(record: SandboxRecord, now: float, *, active: bool) -> dict[str, Any]:
    """A ``SandboxSummary``'s fields, by name (``active`` as the caller found it out): a
    sandbox still running has no reason nor closedAt."""
    fields: dict[str, Any] = {
        "sandbox_id": record.sandbox_id,
        "status": record.status.value,
        "active": active,
        "busy": active and record.is_busy(now),
        "created_at": iso(record.created_at),
        "last_used_at": iso(record.last_used_at),
        "expires_at": iso(record.expires_at) if active else None,
        "executions": record.executions,
    }
    if record.status is not SandboxStatus.RUNNING:
        fields["reason"] = (record.closed_reason or GoneReason(record.status.value)).value
        fields["closed_at"] = iso(record.closed_at)
    return fields


class SandboxService:
    def __init__(
        self,
        registry: SandboxRegistry,
        provider: SandboxProvider,
        settings: Settings,
        clock: Clock,
        audit: AuditTrail | None = None,
    ) -> None:
        self._audit = audit
        self._registry = registry
        self._provider = provider
        self._settings = settings
        self._clock = clock
        self._project_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._released: dict[str, asyncio.Event] = {}

    # -- leasing -----------------------------------------------------------------------

    async def acquire(
        self, principal: Principal, sandbox_id: str | None, *, wait: bool, timeout_s: float
    ) -> Lease:
        """A lease on the named sandbox (waiting while it is busy, unless ``wait`` is False),
        or on a new sandbox."""
        lease_id = new_id("ls_")
        if sandbox_id is None:
            return await self._create(principal, lease_id, timeout_s)
        deadline = self._clock() + timeout_s
        while True:
            record = await self._usable(principal, sandbox_id)
            now = self._clock()
            until = now + timeout_s + LEASE_GRACE_S
            if self._registry.acquire_lease(principal.project_id, sandbox_id, lease_id, until, now):
                return Lease(record, lease_id, created=False, create_ms=0.0)
            if not wait:
                raise Conflict(
                    f"Sandbox {sandbox_id} is busy with another execution; retry later, or"
                    " send the request without 'X-Iris-Busy: reject' to wait for it"
                )
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise Conflict(f"Sandbox {sandbox_id} stayed busy for {timeout_s:g} s; retry later")
            event = self._released.setdefault(sandbox_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, WAIT_POLL_S))

    async def _usable(self, principal: Principal, sandbox_id: str) -> SandboxRecord:
        record = self._registry.get(principal.project_id, sandbox_id)
        if record is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        if record.status is not SandboxStatus.RUNNING:
            raise _gone(record)
        now = self._clock()
        if not record.is_live(now):
            record = await self._finish(
                record, GoneReason.EXPIRED, self._expiry_detail(record, now)
            )
            raise _gone(record)
        # A provider whose run finds a lost sandbox itself (E2B's connect) is not asked
        # first: one round trip less per execution.
        detects = getattr(self._provider, "run_detects_loss", False)
        if not detects and not await self._provider.is_alive(record.provider_ref):
            record = await self._finish(
                record, GoneReason.FAILED, "the sandbox stopped outside this service"
            )
            raise _gone(record)
        return record

    async def _create(self, principal: Principal, lease_id: str, timeout_s: float) -> Lease:
        project = principal.project_id
        async with self._project_locks[project]:
            now = self._clock()
            live = self._registry.list_live(project, now)
            quota = self._settings.max_sandboxes_per_project
            if len(live) >= quota:
                await self._evict_one(project, live, now)
            sandbox_id = new_id("sb_", 15)
            started = asyncio.get_running_loop().time()
            try:
                created = await self._provider.create(
                    sandbox_id, project, self._settings.sandbox_max_lifetime_s
                )
            except ProviderUnavailable as exc:
                raise ServiceUnavailable(
                    f"The sandbox provider cannot create a sandbox now: {exc}",
                    retry_after_s=exc.retry_after_s,
                ) from exc
            create_ms = (asyncio.get_running_loop().time() - started) * 1000
            now = self._clock()
            lifetime_deadline = now + self._settings.sandbox_max_lifetime_s
            record = SandboxRecord(
                sandbox_id=sandbox_id,
                project_id=project,
                provider=self._provider.name,
                provider_ref=created.provider_ref,
                status=SandboxStatus.RUNNING,
                created_at=now,
                last_used_at=now,
                expires_at=min(now + self._settings.sandbox_idle_timeout_s, lifetime_deadline),
                lifetime_deadline=lifetime_deadline,
                lease_id=lease_id,
                lease_until=now + timeout_s + LEASE_GRACE_S,
                tool_channel=created.tool_channel,
            )
            try:
                self._registry.create(record)
            except Exception:
                # Nothing half-made stays behind: no registered sandbox, no running one.
                await self._provider.kill(created.provider_ref)
                raise
            log.info("sandbox %s created for project %s", sandbox_id, project)
            if self._audit is not None:
                self._audit.sandbox("sandbox.created", project, sandbox_id, principal.key_id)
            return Lease(record, lease_id, created=True, create_ms=create_ms)

    async def _evict_one(self, project: str, live: list[SandboxRecord], now: float) -> None:
        idle = sorted((r for r in live if not r.is_busy(now)), key=lambda r: r.last_used_at)
        for victim in idle:
            if self._mark_gone(
                victim,
                GoneReason.EVICTED,
                "least recently used when the project reached its sandbox quota",
                at=now,
                only_if_idle=True,
            ):
                log.info("sandbox %s evicted (project %s at quota)", victim.sandbox_id, project)
                await self._kill_quietly(victim)
                return
        quota = self._settings.max_sandboxes_per_project
        raise TooManyRequests(
            f"All {quota} sandboxes of this project are busy; retry when one finishes, or close"
            " one with DELETE /api/iris/sandbox",
            retry_after_s=5,
        )

    def resume(self, project_id: str, sandbox_id: str, lease_id: str, created: bool) -> Lease:
        """A lease taken earlier (by the request that queued an asynchronous execution),
        picked up by the worker that runs it."""
        record = self._registry.get(project_id, sandbox_id)
        if record is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        if record.status is not SandboxStatus.RUNNING:
            raise _gone(record)
        if record.lease_id != lease_id:
            raise Conflict(
                f"Sandbox {sandbox_id} was given to another execution before this one started"
                " (it waited longer than its time limit)"
            )
        return Lease(record, lease_id, created=created, create_ms=0.0)

    async def discard(self, lease: Lease) -> None:
        """Undo an acquire whose execution will not run: a sandbox made for it is closed,
        an existing one is given back."""
        if lease.created:
            await self._finish(lease.record, GoneReason.CLOSED, "its request failed before running")
        else:
            self.release(lease)

    def release(self, lease: Lease) -> None:
        now = self._clock()
        record = lease.record
        self._registry.release_lease(
            record.project_id,
            record.sandbox_id,
            lease.lease_id,
            last_used_at=now,
            expires_at=now + self._settings.sandbox_idle_timeout_s,
        )
        event = self._released.pop(record.sandbox_id, None)
        if event is not None:
            event.set()

    async def lost(self, lease: Lease, exc: SandboxLost) -> Gone:
        """The provider lost the sandbox during an execution: record why, return the 410."""
        record = self._registry.get(lease.record.project_id, lease.record.sandbox_id)
        if record is not None and record.status is SandboxStatus.RUNNING:
            record = await self._finish(record, GoneReason(exc.reason), str(exc))
        return _gone(record or lease.record)

    # -- inspection and closing ----------------------------------------------------------

    async def describe(self, principal: Principal, sandbox_id: str) -> SandboxView:
        record = self._registry.get(principal.project_id, sandbox_id)
        if record is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        now = self._clock()
        if record.status is SandboxStatus.RUNNING:
            if not record.is_live(now):
                record = await self._finish(
                    record, GoneReason.EXPIRED, self._expiry_detail(record, now)
                )
            elif not await self._provider.is_alive(record.provider_ref):
                record = await self._finish(
                    record, GoneReason.FAILED, "the sandbox stopped outside this service"
                )
        summary = summary_fields(record, now, active=record.status is SandboxStatus.RUNNING)
        total = len(self._registry.list_live(principal.project_id, now))
        return SandboxView(**summary, total_active=total, timestamp=iso(now))

    async def close(self, principal: Principal, sandbox_id: str) -> None:
        """Close one sandbox of the caller's project; closing a closed one is fine."""
        record = self._registry.get(principal.project_id, sandbox_id)
        if record is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        if record.status is SandboxStatus.RUNNING:
            await self._finish(
                record, GoneReason.CLOSED, "closed by request", actor=principal.key_id
            )

    async def close_all(self, principal: Principal) -> int:
        now = self._clock()
        closed = 0
        for record in self._registry.list_live(principal.project_id, now):
            if self._mark_gone(
                record, GoneReason.CLOSED, "closed by request (all)", at=now, actor=principal.key_id
            ):
                await self._kill_quietly(record)
                closed += 1
        return closed

    def close_running(self, detail: str) -> int:
        """Mark every running sandbox of this provider closed, with the reason (a local server
        stopping cleanly: its jails stop with it, and the next start has nothing to call
        failed). Returns how many."""
        now = self._clock()
        return sum(
            self._mark_gone(record, GoneReason.CLOSED, detail, at=now)
            for record in self._registry.list_running(self._provider.name)
        )

    async def reap(self) -> int:
        """Close sandboxes past their idle or lifetime deadline. Returns how many."""
        now = self._clock()
        reaped = 0
        for record in self._registry.list_due(now, limit=100):
            if self._mark_gone(
                record,
                GoneReason.EXPIRED,
                self._expiry_detail(record, now),
                at=now,
                only_if_idle=True,
            ):
                await self._kill_quietly(record)
                reaped += 1
        if reaped:
            log.info("reaped %d idle sandbox(es)", reaped)
        return reaped

    async def reconcile(self) -> int:
        """Make the registry and the provider agree: sandboxes the registry thinks are
        running but the provider lost are marked failed; sandboxes the provider runs for us
        that the registry does not count as running (orphans) are stopped, so none runs
        unbilled by us. Returns how many records changed and orphans were stopped."""
        changed = 0
        running = self._registry.list_running(self._provider.name)
        for record in running:
            if not await self._provider.is_alive(record.provider_ref):
                self._mark_gone(
                    record,
                    GoneReason.FAILED,
                    "the provider no longer had it (lost or killed outside this service)",
                )
                changed += 1
        known = {r.provider_ref for r in running}
        now = self._clock()
        for sandbox in await self._provider.list_sandboxes():
            if sandbox.provider_ref in known:
                continue
            if (
                sandbox.started_at is not None
                and now - sandbox.started_at < self._settings.sandbox_create_grace_s
            ):
                continue  # maybe still being created: its record may not exist yet
            found = self._registry.get(sandbox.project_id, sandbox.sandbox_id)
            # Judged by the provider's own id: a second sandbox made for the same record
            # (a create the provider did twice) is an orphan too.
            if (
                found is None
                or found.status is not SandboxStatus.RUNNING
                or found.provider_ref != sandbox.provider_ref
            ):
                log.warning(
                    "stopping orphan sandbox %s (%s)", sandbox.provider_ref, sandbox.sandbox_id
                )
                await self._kill_quietly_ref(sandbox.provider_ref)
                changed += 1
        return changed

    # -- helpers -------------------------------------------------------------------------

    def _expiry_detail(self, record: SandboxRecord, now: float) -> str:
        if now >= record.lifetime_deadline:
            return f"reached its maximum lifetime of {self._settings.sandbox_max_lifetime_s:g} s"
        return f"idle for more than {self._settings.sandbox_idle_timeout_s:g} s"

    def _mark_gone(
        self,
        record: SandboxRecord,
        reason: GoneReason,
        detail: str,
        *,
        at: float | None = None,
        actor: str = SYSTEM,
        only_if_idle: bool = False,
    ) -> bool:
        """The registry's mark_gone, audited. True if this call ended the sandbox."""
        at = self._clock() if at is None else at
        changed = self._registry.mark_gone(
            record.project_id, record.sandbox_id, reason, at, detail, only_if_idle=only_if_idle
        )
        if changed and self._audit is not None:
            kind: AuditKind = GONE_EVENTS[reason]
            self._audit.sandbox(kind, record.project_id, record.sandbox_id, actor, detail)
        return changed

    async def _finish(
        self, record: SandboxRecord, reason: GoneReason, detail: str, *, actor: str = SYSTEM
    ) -> SandboxRecord:
        """Mark the sandbox gone and stop it; return the record as it now stands."""
        self._mark_gone(record, reason, detail, actor=actor)
        await self._kill_quietly(record)
        return self._registry.get(record.project_id, record.sandbox_id) or record

    async def _kill_quietly(self, record: SandboxRecord) -> None:
        await self._kill_quietly_ref(record.provider_ref)

    async def _kill_quietly_ref(self, provider_ref: str) -> None:
        try:
            await self._provider.kill(provider_ref)
        except Exception:
            # The registry already says it is gone; the next reconcile pass tries again.
            log.exception("could not stop sandbox %s", provider_ref)
