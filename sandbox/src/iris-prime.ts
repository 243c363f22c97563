/**
 * `./iris-prime`: the module code in a sandbox imports to reach the IRIS tools.
 *
 * ```ts
 * import { iris, projectId, sessionId, context } from './iris-prime';
 * const patterns = await iris.discoverPatterns({ minSupport: 0.3 });
 * ```
 *
 * Every `iris.*` call is an MCP tool call to this service's IRIS tool server, scoped to the
 * project of the key that started the execution. The connection opens on the first call,
 * calls may run concurrently, and the runner closes it when the code ends.
 *
 * The runner loads this module before the request exists (warm start), then calls the
 * one-shot initializer below; ES module live bindings make the exported values visible to
 * the user's `import { projectId } ...`.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { ToolsConfig } from "./iris-mcp";

// -- what the tools return ----------------------------------------------------------------

export type Verdict = "correct" | "incorrect" | "partial";
export type VoteValue = "approve" | "reject" | "abstain";
export type ConsensusStatus = "pending" | "approved" | "rejected" | "tied";
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface Pattern {
  antecedent: string[];
  consequent: string[];
  /** Share of transactions containing every item of the rule. */
  support: number;
  /** support(rule) / support(antecedent). */
  confidence: number;
  /** confidence / support(consequent); above 1 is a positive association. */
  lift: number;
  /** Transactions containing every item of the rule. */
  count: number;
}

export interface DiscoverPatternsOptions {
  /** Minimum share of transactions, in (0, 1]. Default 0.3. */
  minSupport?: number;
  /** Minimum confidence, in (0, 1]. Default 0.7. */
  minConfidence?: number;
  /** Most rules to return, best first. Default 10. */
  maxPatterns?: number;
}

export interface EvaluationStats {
  total: number;
  correct: number;
  partial: number;
  incorrect: number;
  /** Mean score (correct 1, partial 0.5, incorrect 0). */
  accuracy: number;
}

export interface Evaluation {
  id: string;
  input: string;
  output: string;
  verdict: Verdict;
  score: number;
  createdAt: string;
  stats: EvaluationStats;
}

export interface Tally {
  approve: number;
  reject: number;
  abstain: number;
  total: number;
}

export interface VoteResult {
  consensusId: string;
  agentId: string;
  vote: VoteValue;
  tally: Tally;
  status: ConsensusStatus;
}

export interface Consensus {
  consensusId: string;
  votes: { agentId: string; vote: VoteValue; updatedAt: string }[];
  tally: Tally;
  status: ConsensusStatus;
}

export interface EventRecord {
  id: string;
  event: string;
  timestamp: string;
}

export interface Prompt {
  name: string;
  version: number;
  template: string;
  variables: string[];
  createdAt: string;
}

export interface PromptSummary {
  name: string;
  latestVersion: number;
  updatedAt: string;
}

export interface LineageRecord {
  id: string;
  signature: string;
  parentId: string | null;
  createdAt: string;
}

export interface Lineage {
  signature: string;
  entries: { id: string; parentId: string | null; input: Json; output: Json; createdAt: string }[];
  /** Pass as `after` for the next page; null at the end. */
  next: string | null;
}

export interface MetricRecord {
  id: string;
  metric: string;
  value: number;
  tags: Record<string, string>;
  timestamp: string;
}

export interface MetricStats {
  metric: string;
  count: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  p50: number | null;
  p95: number | null;
  /** How many of the most recent values p50 and p95 are of (at most 100000). */
  sampled: number;
}

/** A tool call failed; `message` says what was wrong with the arguments. */
export class IrisToolError extends Error {
  override name = "IrisToolError";
  constructor(
    message: string,
    /** The tool that failed, e.g. `savePrompt`. */
    readonly tool: string,
  ) {
    super(message);
  }
}

// -- execution context ------------------------------------------------------------------

export let projectId = "";
export let sessionId: string | null = null;
export let context: Record<string, unknown> = {};

interface ExecutionInfo {
  projectId: string;
  sessionId: string | null;
  context: Record<string, unknown>;
  tools: ToolsConfig | null;
}

const MCP_CLIENT_URL = new URL("./iris-mcp.mjs", import.meta.url).href;
const INIT = Symbol.for("iris.init");
const SHUTDOWN = Symbol.for("iris.shutdown");
const registry = globalThis as Record<symbol, unknown>;
let tools: ToolsConfig | null = null;

// The runner takes this function and removes it from globalThis before any user code runs:
// user code cannot re-initialize the module. A kept runner calls it once per execution.
registry[INIT] = (info: ExecutionInfo): void => {
  projectId = info.projectId;
  sessionId = info.sessionId;
  context = info.context ?? {};
  tools = info.tools;
};

// -- the client -----------------------------------------------------------------------------

let connection: Promise<Client> | null = null;
const inFlight = new Set<Promise<unknown>>();

function connect(): Promise<Client> {
  if (connection) return connection;
  const config = tools;
  if (!config) return Promise.reject(new IrisToolError("The IRIS tools are not available in this execution", "connect"));
  const attempt = (async () => {
    // The MCP client is loaded on first use (the runner preloads it while it waits).
    const mcp = (await import(MCP_CLIENT_URL)) as typeof import("./iris-mcp");
    return mcp.openClient(config);
  })();
  connection = attempt;
  attempt.catch(() => {
    if (connection === attempt) connection = null; // a later call may retry
  });
  return attempt;
}

function cleanMessage(text: string, tool: string): string {
  return text
    .replace(new RegExp(`^Error executing tool ${tool}: `), "")
    .replace(/\n\s*For further information visit \S+/g, "")
    .trim();
}

async function call<T>(tool: string, args: Record<string, unknown>): Promise<T> {
  const work = (async () => {
    const client = await connect();
    const cleanArgs = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
    let result;
    try {
      result = await client.callTool({ name: tool, arguments: cleanArgs });
    } catch (err) {
      throw new IrisToolError(`${tool} failed: ${(err as Error).message}`, tool);
    }
    if (result.isError) {
      const content = Array.isArray(result.content) ? result.content : [];
      const text = content.map((c) => (c && typeof c === "object" && "text" in c ? String(c.text) : "")).join("\n");
      throw new IrisToolError(cleanMessage(text, tool) || `${tool} failed`, tool);
    }
    return result.structuredContent as T;
  })();
  inFlight.add(work);
  void work.then(
    () => inFlight.delete(work),
    () => inFlight.delete(work),
  );
  return work;
}

export const iris = {
  /** Association rules mined from the project's recorded events, evaluations, votes and metrics. */
  async discoverPatterns(options: DiscoverPatternsOptions = {}): Promise<Pattern[]> {
    const found = await call<{ patterns: Pattern[] }>("discoverPatterns", { ...options });
    return found.patterns;
  },

  /** Store a reflexion: an output and its verdict. Returns it with the project's stats. */
  evaluateOutput(input: string, output: string, verdict: Verdict): Promise<Evaluation> {
    return call("evaluateOutput", { input, output, verdict });
  },

  /** Cast (or replace) an agent's vote in a consensus. */
  submitVote(consensusId: string, agentId: string, vote: VoteValue): Promise<VoteResult> {
    return call("submitVote", { consensusId, agentId, vote });
  },

  /** Every vote of a consensus, its tally and status. */
  getConsensus(consensusId: string): Promise<Consensus> {
    return call("getConsensus", { consensusId });
  },

  /** Record a telemetry event. */
  logEvent(event: string, metadata?: Record<string, any>): Promise<EventRecord> {
    return call("logEvent", { event, metadata });
  },

  /** Save the next version of a prompt template; `variables` default to its {placeholders}. */
  savePrompt(name: string, template: string, variables?: string[]): Promise<Prompt> {
    return call("savePrompt", { name, template, variables });
  },

  /** The latest (or the given) version of a prompt, or null. */
  async getPrompt(name: string, version?: number): Promise<Prompt | null> {
    const found = await call<{ prompt: Prompt | null }>("getPrompt", { name, version });
    return found.prompt;
  },

  /** Every prompt name with its latest version (read a page of up to 1000 at a time). */
  async listPrompts(): Promise<PromptSummary[]> {
    const all: PromptSummary[] = [];
    let after: string | null = null;
    do {
      const page: { prompts: PromptSummary[]; next: string | null } = await call("listPrompts", {
        after: after ?? undefined,
        limit: 1000,
      });
      all.push(...page.prompts);
      after = page.next;
    } while (after !== null);
    return all;
  },

  /** Append a step to the lineage of `signature`. */
  trackLineage(signature: string, input: any, output: any, parentId?: string): Promise<LineageRecord> {
    return call("trackLineage", { signature, input, output, parentId });
  },

  /** A page of a lineage's steps, oldest first (at most `limit`, default 100, and about
   * 1 MiB); `next` is the `after` of the following page, null at the end. */
  getLineage(signature: string, options: { after?: string; limit?: number } = {}): Promise<Lineage> {
    return call("getLineage", { signature, after: options.after, limit: options.limit });
  },

  /** Record one value of a metric. */
  recordMetric(metric: string, value: number, tags?: Record<string, string>): Promise<MetricRecord> {
    return call("recordMetric", { metric, value, tags });
  },

  /** count, min, max, mean, p50 and p95 of a metric (optionally only values since a time). */
  getMetrics(metric: string, options: { since?: string | number | Date } = {}): Promise<MetricStats> {
    const since = options.since instanceof Date ? options.since.toISOString() : options.since;
    return call("getMetrics", { metric, since });
  },

  /** Close the connection to the IRIS tools. Idempotent; the runner also calls it at the end. */
  async close(): Promise<void> {
    const current = connection;
    connection = null;
    if (!current) return;
    try {
      await (await current).close();
    } catch {
      // already closed, or never opened: nothing to release
    }
  },
};

/** Called by the runner when the code ends: let calls in flight finish, then close. */
registry[SHUTDOWN] = async (): Promise<void> => {
  while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
  await iris.close();
};

export type Iris = typeof iris;
export default iris;
