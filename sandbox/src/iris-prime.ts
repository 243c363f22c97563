/**
 * The module user code imports as `./iris-prime`.
 *
 * The runner loads this module before the request exists (warm start), then
 * calls the one-shot initializer below; ES module live bindings make the
 * exported values visible to the user's `import { projectId } ...`.
 */
export let projectId = "";
export let sessionId: string | null = null;
export let context: Record<string, unknown> = {};

interface ExecutionInfo {
  projectId: string;
  sessionId: string | null;
  context: Record<string, unknown>;
}

const INIT = Symbol.for("iris.init");
const SHUTDOWN = Symbol.for("iris.shutdown");
const registry = globalThis as Record<symbol, unknown>;

registry[INIT] = (info: ExecutionInfo): void => {
  delete registry[INIT]; // one shot: user code cannot re-initialize
  projectId = info.projectId;
  sessionId = info.sessionId;
  context = info.context ?? {};
};

export const iris = {
  /** Closes the connection to the IRIS tools. Idempotent. */
  async close(): Promise<void> {},
};

registry[SHUTDOWN] = () => iris.close();

export default iris;
