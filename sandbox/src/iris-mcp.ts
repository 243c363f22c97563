/**
 * The MCP client of `./iris-prime` (the SDK's Client and Streamable HTTP transport),
 * in a bundle of its own: loading it costs tens of milliseconds, which no execution that
 * does not use the tools should pay, and which a warm runner pays while it waits.
 */
import * as events from "node:events";
import * as http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

export interface ToolsConfig {
  /** Base URL of the tool server (its /mcp endpoint). */
  url: string;
  /** Unix socket to reach it through (local sandboxes). */
  socket?: string;
  /** Per-execution token; absent when the network adds it on the way out. */
  token?: string;
}

type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

const NO_BODY = new Set([101, 204, 205, 304]);

/** `fetch` over a Unix socket, for the MCP client: the only channel out of a local jail. */
function socketFetch(socketPath: string): FetchLike {
  // The tool socket serves 16 calls at once per execution (IRIS_TOOL_SOCKET_IN_FLIGHT): more wait here.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(String(url));
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, key) => (headers[key] = value));
      headers.host = "localhost";
      const request = http.request(
        { socketPath, agent, path: target.pathname + target.search, method: init?.method ?? "GET", headers },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => {
            const status = response.statusCode ?? 500;
            const responseHeaders = new Headers();
            for (const [key, value] of Object.entries(response.headers)) {
              if (value !== undefined) responseHeaders.set(key, Array.isArray(value) ? value.join(", ") : value);
            }
            resolve(new Response(NO_BODY.has(status) ? null : Buffer.concat(chunks), { status, headers: responseHeaders }));
          });
        },
      );
      const signal = init?.signal;
      const abort = () => request.destroy(new Error("aborted"));
      if (signal) {
        // The MCP client shares one signal across concurrent calls: one listener per call.
        events.setMaxListeners(0, signal);
        signal.addEventListener("abort", abort, { once: true });
        request.on("close", () => signal.removeEventListener("abort", abort));
      }
      request.on("error", reject);
      if (typeof init?.body === "string") request.write(init.body);
      request.end();
    });
}

export async function openClient(config: ToolsConfig): Promise<Client> {
  const headers: Record<string, string> = {};
  if (config.token) headers.authorization = `Bearer ${config.token}`;
  const transport = new StreamableHTTPClientTransport(new URL(config.url), {
    fetch: config.socket ? socketFetch(config.socket) : undefined,
    requestInit: { headers },
  });
  const client = new Client({ name: "iris-prime", version: "1.0.0" });
  await client.connect(transport);
  return client;
}
