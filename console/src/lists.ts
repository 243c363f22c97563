// Sandboxes, execution history (and one execution), and the audit trail.
import {
  type AuditEntry,
  type ExecutionDetail,
  type Executions,
  type Sandboxes,
  del,
  getJson,
} from "./api";
import { ago, h, field, table } from "./dom";
import type { Language } from "./editor";
import { clearNotice, go, showError } from "./notice";
import { draft, resultPanes } from "./playground";

function loadMore(next: () => Promise<void>): HTMLButtonElement {
  const button = h("button", { type: "button", class: "more" }, "Load more");
  button.addEventListener("click", () => void next());
  return button;
}

// -- sandboxes -----------------------------------------------------------------------------

export async function sandboxesPage(): Promise<HTMLElement> {
  const status = h(
    "select",
    {},
    h("option", { value: "" }, "Any"),
    ...["running", "closed", "expired", "failed"].map((s) => h("option", { value: s }, s)),
  );
  const list = h("div", {});
  const status_line = h("p", { role: "status", class: "live-status" });
  let cursor: string | null = null;
  let rows: (Node | string)[][] = [];

  async function close(sandboxId: string): Promise<void> {
    try {
      const answer = await del<{ message: string }>(`api/iris/sandbox?sandboxId=${encodeURIComponent(sandboxId)}`);
      status_line.textContent = answer.message;
      await load(true);
    } catch (error) {
      showError(error);
    }
  }

  async function load(fresh: boolean): Promise<void> {
    if (fresh) {
      cursor = null;
      rows = [];
    }
    const page = await getJson<Sandboxes>("api/iris/sandboxes", { status: status.value, limit: "25", cursor: cursor ?? undefined });
    cursor = page.nextCursor;
    const now = Date.now();
    for (const s of page.sandboxes) {
      const closeButton = h("button", { type: "button", "aria-label": `Close ${s.sandboxId}` }, "Close");
      closeButton.addEventListener("click", () => void close(s.sandboxId));
      rows.push([
        h("a", { href: `#/executions?sandbox=${s.sandboxId}`, "data-sandbox": s.sandboxId }, s.sandboxId),
        h("span", { class: `badge ${s.active ? "ok" : "off"}` }, s.active ? (s.busy ? "busy" : "running") : s.reason ?? s.status),
        h("span", { title: s.createdAt }, ago(s.createdAt, now)),
        h("span", { title: s.expiresAt ?? "" }, s.expiresAt ? ago(s.expiresAt, now) : s.closedAt ? `closed ${ago(s.closedAt, now)}` : ""),
        String(s.executions),
        s.active ? closeButton : h("span", {}, "—"),
      ]);
    }
    list.replaceChildren(
      rows.length
        ? table("Your project's sandboxes, newest first", ["Sandbox", "Status", "Age", "Expiry", "Executions", ""], rows)
        : h("p", {}, "No sandboxes."),
      cursor ? loadMore(() => load(false).catch(showError)) : "",
    );
  }

  const closeAll = h("button", { type: "button", class: "danger" }, "Close all");
  closeAll.addEventListener("click", async () => {
    if (!window.confirm("Close every sandbox of this project? Running executions stop.")) return;
    try {
      const answer = await del<{ closed: number }>("api/iris/sandbox?all=true");
      status_line.textContent = `Closed ${answer.closed} sandbox(es)`;
      await load(true);
    } catch (error) {
      showError(error);
    }
  });
  status.addEventListener("change", () => void load(true).catch(showError));
  const refresh = h("button", { type: "button" }, "Refresh");
  refresh.addEventListener("click", () => {
    clearNotice();
    void load(true).catch(showError);
  });
  await load(true);
  return h("div", {}, h("h1", {}, "Sandboxes"), h("div", { class: "toolbar" }, field("Status", status), refresh, closeAll), status_line, list);
}

// -- executions ----------------------------------------------------------------------------

export async function executionsPage(): Promise<HTMLElement> {
  const query = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const status = h(
    "select",
    {},
    h("option", { value: "" }, "Any"),
    ...["queued", "running", "succeeded", "failed", "timed_out"].map((s) => h("option", { value: s }, s)),
  );
  const sandbox = h("input", { type: "text", value: query.get("sandbox") ?? "", autocomplete: "off", placeholder: "sb_…" });
  const list = h("div", {});
  let cursor: string | null = null;
  let rows: (Node | string)[][] = [];

  async function load(fresh: boolean): Promise<void> {
    if (fresh) {
      cursor = null;
      rows = [];
    }
    const page = await getJson<Executions>("api/iris/executions", {
      status: status.value,
      sandboxId: sandbox.value.trim(),
      limit: "25",
      cursor: cursor ?? undefined,
    });
    cursor = page.nextCursor;
    const now = Date.now();
    for (const e of page.executions) {
      rows.push([
        h("a", { href: `#/executions/${e.executionId}` }, e.executionId),
        h("span", { class: `badge ${e.success ? "ok" : e.success === false ? "bad" : "off"}` }, e.status),
        e.language ?? "",
        e.async ? "async" : "sync",
        h("code", {}, e.sandboxId),
        h("span", { title: e.createdAt }, ago(e.createdAt, now)),
        e.executionTime === null ? "" : `${e.executionTime} ms`,
      ]);
    }
    list.replaceChildren(
      rows.length
        ? table("Executions, newest first", ["Execution", "Status", "Language", "Mode", "Sandbox", "Created", "Time"], rows)
        : h("p", {}, "No executions match."),
      cursor ? loadMore(() => load(false).catch(showError)) : "",
    );
  }

  const filters = h("form", { class: "toolbar", "aria-label": "Filters" },
    field("Status", status), field("Sandbox id", sandbox), h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    clearNotice();
    void load(true).catch(showError);
  });
  status.addEventListener("change", () => void load(true).catch(showError));
  await load(true);
  return h("div", {}, h("h1", {}, "Executions"), filters, list);
}

export async function executionPage(executionId: string): Promise<HTMLElement> {
  const detail = await getJson<ExecutionDetail>(`api/iris/executions/${encodeURIComponent(executionId)}`);
  const rerun = h("button", { type: "button", class: "primary" }, "Re-run in playground");
  rerun.addEventListener("click", () => {
    draft.code = detail.code ?? "";
    draft.language = (detail.language ?? "typescript") as Language;
    draft.sessionId = detail.sessionId ?? "";
    draft.sandboxId = "";
    go("playground");
  });
  return h(
    "div",
    {},
    h("h1", {}, "Execution ", h("code", {}, detail.executionId)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Status"), h("dd", { "data-testid": "status" }, detail.status),
      h("dt", {}, "Mode"), h("dd", {}, detail.async ? "async" : "sync"),
      h("dt", {}, "Language"), h("dd", {}, detail.language ?? ""),
      h("dt", {}, "Sandbox"), h("dd", {}, h("code", {}, detail.sandboxId)),
      h("dt", {}, "Session"), h("dd", {}, detail.sessionId ?? "—"),
      h("dt", {}, "Created"), h("dd", {}, detail.createdAt),
      h("dt", {}, "Finished"), h("dd", {}, detail.finishedAt ?? "—"),
      detail.reason ? [h("dt", {}, "Reason"), h("dd", {}, detail.reason)] : null,
    ),
    rerun,
    h("h2", {}, "Code"),
    h("pre", { class: "pane code", tabindex: 0, "data-pane": "code" }, detail.code ?? ""),
    h("h2", {}, "Log lines"),
    h("pre", { class: "pane", tabindex: 0, "data-pane": "logs" }, detail.logs.join("\n") || "(none)"),
    detail.result ? resultPanes(detail.result, detail.sandboxId) : h("p", {}, "No answer yet."),
  );
}

// -- audit ---------------------------------------------------------------------------------

export async function auditPage(): Promise<HTMLElement> {
  const limit = h("input", { type: "number", min: 1, max: 1000, value: 100, inputmode: "numeric" });
  const list = h("div", {});
  async function load(): Promise<void> {
    const page = await getJson<{ events: AuditEntry[] }>("api/iris/audit", { limit: limit.value });
    const now = Date.now();
    list.replaceChildren(
      page.events.length
        ? table(
            "Audit trail, newest first",
            ["When", "What", "Who", "Sandbox", "Execution", "Outcome", "Detail"],
            page.events.map((e) => [
              h("span", { title: e.at }, ago(e.at, now)),
              e.kind,
              h("code", {}, e.actor),
              e.sandboxId ?? "",
              e.executionId ? h("a", { href: `#/executions/${e.executionId}` }, e.executionId) : "",
              e.outcome ?? "",
              e.detail ?? "",
            ].map((c) => (c instanceof Node ? c : document.createTextNode(String(c))))),
          )
        : h("p", {}, "Nothing recorded yet."),
    );
  }
  const form = h("form", { class: "toolbar", "aria-label": "Audit options" }, field("Entries", limit), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearNotice();
    void load().catch(showError);
  });
  await load();
  return h("div", {}, h("h1", {}, "Audit trail"), form, list);
}
