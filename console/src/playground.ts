// The playground: write code, run it (now or in the background with live log lines), read
// its Results / Output / Errors, copy the exact request as curl, fetch or Python.
import {
  ApiError,
  type ExecResult,
  type ExecuteAnswer,
  type ExecutionDetail,
  type Queued,
  type Sandboxes,
  getJson,
  postJson,
  send,
  url,
} from "./api";
import { h, field } from "./dom";
import { createEditor, type CodeEditor, type Language } from "./editor";
import { EXAMPLES } from "./examples";
import { clearNotice, showError } from "./notice";
import { asCurl, asFetch, asPython, type RequestShape } from "./snippets";

/** What the playground holds across pages (a re-run from the history sets it). */
export const draft = {
  code: EXAMPLES[0].code,
  language: EXAMPLES[0].language as Language,
  sessionId: "",
  context: "{}",
  sandboxId: "",
  keepState: false,
};

const FINAL = new Set(["succeeded", "failed", "timed_out"]);

/** `=== Results ===` / `=== Output ===` / `=== Errors ===` sections of an answer's output. */
export function sections(output: string): Record<string, string> {
  const found: Record<string, string> = {};
  const parts = output.split(/^=== (Results|Output|Errors) ===$/m);
  for (let i = 1; i < parts.length; i += 2) found[parts[i]] = parts[i + 1].replace(/^\n+|\n+$/g, "");
  return found;
}

/** The Results, Output and Errors panes of one answer, with its timings. */
export function resultPanes(result: ExecResult, sandboxId: string): HTMLElement {
  const parts = sections(result.output);
  const error = result.error;
  const meta = result.metadata ?? {};
  return h(
    "section",
    { class: "panes", "aria-label": "Result" },
    h(
      "p",
      { class: `verdict ${result.success ? "ok" : "failed"}`, "data-testid": "verdict" },
      result.success ? "Succeeded" : `Failed${error ? `: ${error.name}` : ""}`,
      " · ",
      h("span", { "data-testid": "execution-time" }, `executionTime ${result.executionTime} ms`),
      " · ",
      h("span", { "data-testid": "setup-time" }, `setupTime ${meta.setupTime ?? 0} ms`),
      " · sandbox ",
      h("code", { "data-testid": "sandbox-id" }, sandboxId),
      meta.executionId ? [" · ", h("a", { href: `#/executions/${meta.executionId}` }, String(meta.executionId))] : null,
      typeof meta.stateReset === "boolean"
        ? [" · ", h("span", { "data-testid": "state" }, meta.stateReset ? `state reset (${String(meta.stateResetReason ?? "")})` : "state kept")]
        : null,
    ),
    h("h2", {}, "Results"),
    h("pre", { class: "pane", "data-pane": "results", tabindex: 0 }, parts.Results ?? "(no result)"),
    h("h2", {}, "Output"),
    h("pre", { class: "pane", "data-pane": "output", tabindex: 0 }, parts.Output ?? "(no output)"),
    h("h2", {}, "Errors"),
    h(
      "pre",
      { class: "pane errors", "data-pane": "errors", tabindex: 0 },
      error ? `${error.name}: ${error.message}\n${error.stack ?? ""}` : (parts.Errors ?? "(no errors)"),
    ),
  );
}

function parseContext(text: string): Record<string, unknown> {
  const trimmed = text.trim();
  if (!trimmed) return {};
  const value: unknown = JSON.parse(trimmed);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new SyntaxError("context must be a JSON object, like {\"userId\": 42}");
  }
  return value as Record<string, unknown>;
}

async function* sseEvents(response: Response): AsyncGenerator<{ event: string; data: string }> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

export async function playgroundPage(): Promise<HTMLElement> {
  const examples = h(
    "select",
    {},
    ...EXAMPLES.map((e) => h("option", { value: e.id }, e.title)),
  );
  const language = h(
    "select",
    {},
    h("option", { value: "typescript" }, "TypeScript"),
    h("option", { value: "javascript" }, "JavaScript"),
    h("option", { value: "python" }, "Python"),
  );
  language.value = draft.language;
  const sessionId = h("input", { type: "text", value: draft.sessionId, autocomplete: "off", pattern: "[A-Za-z0-9._:\\-]{1,128}" });
  const context = h("textarea", { rows: 3, spellcheck: "false" });
  context.value = draft.context;
  const contextError = h("small", { class: "field-error", id: "context-error", "aria-live": "polite" });
  context.setAttribute("aria-errormessage", "context-error");
  const sandbox = h("select", {});
  const keepState = h("input", { type: "checkbox" });
  keepState.checked = draft.keepState;
  const runButton = h("button", { type: "button", class: "primary" }, "Run");
  const asyncButton = h("button", { type: "button" }, "Run async");
  const logs = h("ol", { class: "live-logs", "aria-label": "Live log lines", "data-testid": "live-logs" });
  const liveStatus = h("p", { class: "live-status", role: "status" });
  const result = h("div", { class: "result" });
  const snippet = h("pre", { class: "snippet", tabindex: 0, "data-testid": "snippet", hidden: true });
  const editorHost = h("div", { class: "editor" });

  let editor: CodeEditor;
  let running = false;

  async function loadSandboxes(): Promise<void> {
    const page = await getJson<Sandboxes>("api/iris/sandboxes", { status: "running", limit: "50" });
    const keep = draft.sandboxId;
    sandbox.replaceChildren(
      h("option", { value: "" }, "New sandbox"),
      ...page.sandboxes.filter((s) => s.active).map((s) => h("option", { value: s.sandboxId }, s.sandboxId)),
    );
    sandbox.value = [...sandbox.options].some((o) => o.value === keep) ? keep : "";
    draft.sandboxId = sandbox.value;
  }

  function validContext(): Record<string, unknown> | null {
    try {
      const value = parseContext(context.value);
      context.removeAttribute("aria-invalid");
      contextError.textContent = "";
      return value;
    } catch (error) {
      context.setAttribute("aria-invalid", "true");
      contextError.textContent = `Invalid context: ${(error as Error).message}`;
      return null;
    }
  }

  function request(async: boolean): RequestShape | null {
    const ctx = validContext();
    if (ctx === null) return null;
    const body: Record<string, unknown> = { code: editor.code(), language: language.value };
    if (sessionId.value.trim()) body.sessionId = sessionId.value.trim();
    if (Object.keys(ctx).length) body.context = ctx;
    if (sandbox.value) body.sandboxId = sandbox.value;
    if (keepState.checked) body.keepState = true;
    if (async) body.async = true;
    return { url: url("api/iris/execute"), body };
  }

  /** With state kept, the next run goes to the same sandbox (its live runner), as the next
   *  cell of a notebook does. */
  function keepSandbox(sandboxId: string): void {
    if (!keepState.checked) return;
    draft.sandboxId = sandboxId;
    // Chosen at once (the list catches up after the run): a Run clicked meanwhile goes there.
    if (![...sandbox.options].some((o) => o.value === sandboxId)) sandbox.append(h("option", { value: sandboxId }, sandboxId));
    sandbox.value = sandboxId;
  }

  function busy(on: boolean): void {
    running = on;
    runButton.disabled = on;
    asyncButton.disabled = on;
  }

  async function run(async: boolean): Promise<void> {
    if (running) return;
    const shape = request(async);
    if (!shape) return;
    Object.assign(draft, { code: editor.code(), language: language.value as Language, sessionId: sessionId.value, context: context.value });
    clearNotice();
    busy(true);
    logs.replaceChildren();
    result.replaceChildren();
    liveStatus.textContent = async ? "Queued…" : "Running…";
    try {
      if (!async) {
        const answer = await postJson<ExecuteAnswer>("api/iris/execute", shape.body);
        keepSandbox(answer.sandboxId);
        for (const line of answer.result.logs) logs.append(h("li", {}, line));
        result.replaceChildren(resultPanes(answer.result, answer.sandboxId));
        liveStatus.textContent = answer.success ? "Done" : "Done (the code failed)";
      } else {
        const queued = await postJson<Queued>("api/iris/execute", shape.body);
        keepSandbox(queued.sandboxId);
        liveStatus.textContent = `Running ${queued.executionId}…`;
        const done = await follow(queued.executionId);
        liveStatus.textContent = `Done: ${done.status}`;
        if (done.result) result.replaceChildren(resultPanes(done.result, done.sandboxId));
        else if (done.reason) result.replaceChildren(h("p", { class: "verdict failed" }, `Failed: ${done.reason}`));
      }
    } catch (error) {
      liveStatus.textContent = "Not run";
      showError(error);
    } finally {
      busy(false);
      loadSandboxes().catch(() => {});
    }
  }

  /** Live lines over Server-Sent Events (fetch streaming: EventSource cannot send the key);
   *  where the edge cannot stream (API Gateway), poll with the cursor. */
  async function follow(executionId: string): Promise<ExecutionDetail> {
    try {
      const response = await send(`api/iris/executions/${executionId}/events`, { headers: { Accept: "text/event-stream" } });
      for await (const { event, data } of sseEvents(response)) {
        const parsed = JSON.parse(data) as Record<string, unknown>;
        if (event === "log") logs.append(h("li", {}, String(parsed.line)));
        else if (event === "status") liveStatus.textContent = `${String(parsed.status)} ${executionId}…`;
        else if (event === "done") return parsed as unknown as ExecutionDetail;
      }
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 429)) throw error;
      // no stream here: poll
    }
    let cursor = logs.children.length;
    for (;;) {
      const page = await getJson<ExecutionDetail>(`api/iris/executions/${executionId}`, { after: String(cursor) });
      for (const line of page.logs) logs.append(h("li", {}, line));
      cursor = page.cursor;
      if (FINAL.has(page.status)) return page;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }

  function copy(kind: "curl" | "fetch" | "python"): void {
    const shape = request(false);
    if (!shape) return;
    const text = kind === "curl" ? asCurl(shape) : kind === "fetch" ? asFetch(shape) : asPython(shape);
    snippet.hidden = false;
    snippet.textContent = text;
    snippet.dataset.kind = kind;
    navigator.clipboard?.writeText(text).then(
      () => (liveStatus.textContent = `Copied as ${kind} (the key is read from $IRIS_API_KEY)`),
      () => (liveStatus.textContent = `Shown as ${kind} below (copy it from there)`),
    );
  }

  const loadExample = h("button", { type: "button" }, "Load example");
  loadExample.addEventListener("click", () => {
    const example = EXAMPLES.find((e) => e.id === examples.value)!;
    editor.setCode(example.code);
    language.value = example.language;
    editor.setLanguage(example.language);
    draft.code = example.code;
    draft.language = example.language;
  });
  language.addEventListener("change", () => {
    draft.language = language.value as Language;
    editor.setLanguage(draft.language);
  });
  sandbox.addEventListener("change", () => (draft.sandboxId = sandbox.value));
  keepState.addEventListener("change", () => (draft.keepState = keepState.checked));
  context.addEventListener("input", () => validContext());
  runButton.addEventListener("click", () => void run(false));
  asyncButton.addEventListener("click", () => void run(true));

  const page = h(
    "div",
    { class: "playground" },
    h("h1", {}, "Playground"),
    h(
      "div",
      { class: "toolbar" },
      field("Example", examples),
      loadExample,
    ),
    h("div", { class: "editor-field" }, h("span", { class: "label", id: "code-label" }, "Code"), editorHost,
      h("small", { class: "hint" }, "Ctrl/Cmd+Enter runs. Tab indents; press Escape, then Tab, to leave the editor.")),
    h(
      "div",
      { class: "options" },
      field("Language", language),
      field("Session id", sessionId, "Optional; letters, digits and . _ : -"),
      field("Sandbox", sandbox, "New, or one of your running sandboxes"),
      h("div", { class: "field check" }, h("label", {}, keepState, " Keep state"),
        h("small", { class: "hint" }, "Run in the sandbox's live runner: what one run declares, the next sees")),
      h("div", { class: "field wide" }, h("label", { for: "context" }, "Context (JSON object)"), context, contextError),
    ),
    h(
      "div",
      { class: "actions" },
      runButton,
      asyncButton,
      h("span", { class: "copy-as" }, "Copy as ",
        ...(["curl", "fetch", "python"] as const).map((kind) => {
          const button = h("button", { type: "button" }, kind === "python" ? "Python" : kind);
          button.addEventListener("click", () => copy(kind));
          return button;
        })),
    ),
    snippet,
    liveStatus,
    h("h2", {}, "Log lines"),
    logs,
    result,
  );
  context.id = "context";
  page.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void run(false);
    }
  });
  editor = createEditor(editorHost, "Code", draft.code, draft.language, () => void run(false));
  // The page shows at once; the picker fills in when the list arrives.
  sandbox.append(h("option", { value: "" }, "New sandbox"));
  loadSandboxes().catch(showError);
  return page;
}
