// What the code wrote: patterns, prompts and their versions, consensus tallies, lineage,
// metrics over time. Read through /mcp's read tools with the signed-in key.
import { tool } from "./api";
import { h, field, pretty, table } from "./dom";
import { clearNotice, showError } from "./notice";

interface Pattern {
  antecedent: string[];
  consequent: string[];
  support: number;
  confidence: number;
  lift: number;
  count: number;
}
interface Prompt {
  name: string;
  version: number;
  template: string;
  variables: string[];
  createdAt: string;
}
interface Consensus {
  consensusId: string;
  votes: { agentId: string; vote: string; updatedAt: string }[];
  tally: { approve: number; reject: number; abstain: number; total: number };
  status: string;
}
interface LineageEntry {
  id: string;
  parentId: string | null;
  input: unknown;
  output: unknown;
  createdAt: string;
}
interface MetricStats {
  count: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  p50: number | null;
  p95: number | null;
}

/** A section with a small form: ``run`` fills ``out`` when the form is sent (and at once). */
function panel(title: string, id: string, controls: HTMLElement[], run: (out: HTMLElement) => Promise<void>): HTMLElement {
  const out = h("div", { class: "panel-out", "aria-live": "polite" });
  const form = h("form", { class: "toolbar", "aria-labelledby": `${id}-title` }, ...controls, h("button", { type: "submit" }, "Show"));
  const go = (): void => {
    clearNotice();
    run(out).catch((error) => {
      out.replaceChildren();
      showError(error);
    });
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go();
  });
  go();
  return h("section", { class: "panel", id }, h("h2", { id: `${id}-title` }, title), form, out);
}

const fmt = (n: number | null | undefined): string => (n === null || n === undefined ? "—" : Number(n.toFixed(3)).toString());

function patternsPanel(): HTMLElement {
  const minSupport = h("input", { type: "number", min: 0.01, max: 1, step: 0.01, value: 0.1, inputmode: "decimal" });
  const minConfidence = h("input", { type: "number", min: 0.01, max: 1, step: 0.01, value: 0.5, inputmode: "decimal" });
  return panel("Patterns", "patterns", [field("Minimum support", minSupport), field("Minimum confidence", minConfidence)], async (out) => {
    const found = await tool<{ patterns: Pattern[]; transactions: number }>("discoverPatterns", {
      minSupport: Number(minSupport.value),
      minConfidence: Number(minConfidence.value),
      maxPatterns: 50,
    });
    out.replaceChildren(
      h("p", {}, `${found.patterns.length} rule(s) over ${found.transactions} transaction(s).`),
      found.patterns.length
        ? table(
            "Association rules",
            ["If", "Then", "Support", "Confidence", "Lift", "Count"],
            found.patterns.map((p) => [p.antecedent.join(", "), p.consequent.join(", "), fmt(p.support), fmt(p.confidence), fmt(p.lift), String(p.count)]),
          )
        : "",
    );
  });
}

function promptsPanel(): HTMLElement {
  return panel("Prompts", "prompts", [], async (out) => {
    const list = await tool<{ prompts: { name: string; latestVersion: number; updatedAt: string }[] }>("listPrompts", {});
    if (!list.prompts.length) {
      out.replaceChildren(h("p", {}, "No prompts saved yet."));
      return;
    }
    const blocks = await Promise.all(
      list.prompts.map(async (summary) => {
        const versions = await Promise.all(
          Array.from({ length: summary.latestVersion }, (_, i) =>
            tool<{ prompt: Prompt | null }>("getPrompt", { name: summary.name, version: i + 1 }),
          ),
        );
        return h(
          "div",
          { class: "prompt", "data-prompt": summary.name },
          h("h3", {}, summary.name, ` (${summary.latestVersion} version${summary.latestVersion > 1 ? "s" : ""})`),
          h(
            "div",
            { class: "versions" },
            ...versions.map(({ prompt }) =>
              prompt
                ? h("article", { class: "version" }, h("h4", {}, `v${prompt.version}`), h("pre", { tabindex: 0 }, prompt.template),
                    h("p", { class: "hint" }, `variables: ${prompt.variables.join(", ") || "none"} · ${prompt.createdAt}`))
                : "",
            ),
          ),
        );
      }),
    );
    out.replaceChildren(...blocks);
  });
}

function consensusPanel(): HTMLElement {
  const id = h("input", { type: "text", autocomplete: "off", value: sessionStorage.getItem("iris.consensus") ?? "" });
  return panel("Consensus", "consensus", [field("Consensus id", id, "The id the code voted on (e.g. its sessionId)")], async (out) => {
    const value = id.value.trim();
    if (!value) {
      out.replaceChildren(h("p", {}, "Enter a consensus id."));
      return;
    }
    sessionStorage.setItem("iris.consensus", value);
    const found = await tool<Consensus>("getConsensus", { consensusId: value });
    const t = found.tally;
    out.replaceChildren(
      h("p", { "data-testid": "consensus-status" }, `Status: ${found.status} · approve ${t.approve} · reject ${t.reject} · abstain ${t.abstain} · total ${t.total}`),
      h("div", { class: "bars", role: "img", "aria-label": `approve ${t.approve}, reject ${t.reject}, abstain ${t.abstain}` },
        ...(["approve", "reject", "abstain"] as const).map((k) =>
          h("div", { class: `bar ${k}`, "data-width": String(t.total ? Math.round((t[k] / t.total) * 100) : 0) }, `${k} ${t[k]}`))),
      found.votes.length ? table("Votes", ["Agent", "Vote", "When"], found.votes.map((v) => [v.agentId, v.vote, v.updatedAt])) : "",
    );
    for (const bar of out.querySelectorAll<HTMLElement>(".bar")) bar.style.width = `${Math.max(8, Number(bar.dataset.width))}%`;
  });
}

function lineagePanel(): HTMLElement {
  const signature = h("input", { type: "text", autocomplete: "off", value: "multi-agent-workflow" });
  return panel("Lineage", "lineage", [field("Signature", signature)], async (out) => {
    const found = await tool<{ signature: string; entries: LineageEntry[] }>("getLineage", { signature: signature.value.trim() });
    if (!found.entries.length) {
      out.replaceChildren(h("p", {}, "Nothing traced under this signature."));
      return;
    }
    const children = new Map<string | null, LineageEntry[]>();
    const ids = new Set(found.entries.map((e) => e.id));
    for (const entry of found.entries) {
      const parent = entry.parentId && ids.has(entry.parentId) ? entry.parentId : null;
      children.set(parent, [...(children.get(parent) ?? []), entry]);
    }
    const branch = (parent: string | null): HTMLElement =>
      h("ul", { class: "tree", "aria-label": parent === null ? `Lineage of ${found.signature}` : null },
        ...(children.get(parent) ?? []).map((entry) =>
          h("li", {},
            h("details", {}, h("summary", {}, h("code", {}, entry.id), ` · ${entry.createdAt}`),
              h("pre", { tabindex: 0 }, `input: ${pretty(entry.input)}\noutput: ${pretty(entry.output)}`)),
            children.has(entry.id) ? branch(entry.id) : null)));
    out.replaceChildren(branch(null));
  });
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** Per-bucket count and mean from the tool's cumulative answers: getMetrics(since=t) for
 *  each bucket start t; a bucket is the difference of two neighbours. */
function metricsPanel(): HTMLElement {
  const metric = h("input", { type: "text", autocomplete: "off", value: "prompt_score" });
  const span = h("select", {}, h("option", { value: "3600" }, "Last hour"), h("option", { value: "86400" }, "Last day"), h("option", { value: "604800" }, "Last week"));
  const BUCKETS = 12;
  return panel("Metrics", "metrics", [field("Metric", metric), field("Over", span)], async (out) => {
    const name = metric.value.trim();
    const now = Date.now();
    const width = (Number(span.value) * 1000) / BUCKETS;
    const starts = Array.from({ length: BUCKETS }, (_, i) => now - (BUCKETS - i) * width);
    const all = await tool<MetricStats>("getMetrics", { metric: name });
    const cumulative = await Promise.all(starts.map((t) => tool<MetricStats>("getMetrics", { metric: name, since: new Date(t).toISOString() })));
    const sums = cumulative.map((c) => (c.count ? c.count * (c.mean ?? 0) : 0));
    const buckets = starts.map((t, i) => {
      const count = cumulative[i].count - (cumulative[i + 1]?.count ?? 0);
      const sum = sums[i] - (sums[i + 1] ?? 0);
      return { t, count, mean: count ? sum / count : null };
    });
    const top = Math.max(...buckets.map((b) => b.mean ?? 0), all.max ?? 0, 1e-9);
    const chart = svg("svg", { viewBox: "0 0 360 140", class: "chart", role: "img", "aria-labelledby": "metrics-chart-title" });
    chart.append(svg("title", { id: "metrics-chart-title" }, `Mean of ${name} per ${Math.round(width / 60000)} min, ${buckets.reduce((a, b) => a + b.count, 0)} values`));
    chart.append(svg("line", { x1: 30, y1: 120, x2: 355, y2: 120, class: "axis" }));
    buckets.forEach((b, i) => {
      if (b.mean === null) return;
      const height = Math.max(2, (b.mean / top) * 100);
      chart.append(svg("rect", { x: 34 + i * 27, y: 120 - height, width: 20, height, class: "bar" }));
      chart.append(svg("text", { x: 44 + i * 27, y: 115 - height, "text-anchor": "middle", class: "label" }, fmt(b.mean)));
    });
    chart.append(svg("text", { x: 30, y: 136, class: "label" }, new Date(starts[0]).toLocaleTimeString()));
    chart.append(svg("text", { x: 355, y: 136, "text-anchor": "end", class: "label" }, "now"));
    out.replaceChildren(
      h("p", { "data-testid": "metric-summary" }, `${name}: count ${all.count} · min ${fmt(all.min)} · max ${fmt(all.max)} · mean ${fmt(all.mean)} · p50 ${fmt(all.p50)} · p95 ${fmt(all.p95)}`),
      chart,
    );
  });
}

export async function irisPage(): Promise<HTMLElement> {
  return h(
    "div",
    { class: "iris" },
    h("h1", {}, "IRIS records"),
    h("p", { class: "hint" }, "What your code wrote through the iris.* tools, read with the same key over /mcp."),
    patternsPanel(),
    promptsPanel(),
    consensusPanel(),
    lineagePanel(),
    metricsPanel(),
  );
}
