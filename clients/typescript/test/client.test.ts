// The TypeScript client against a real local server. Run by
// tests/integration/test_client_typescript.py, which starts the server and passes IRIS_URL,
// IRIS_API_KEY and IRIS_SECOND_API_KEY (a key of another, empty project).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  AuthenticationError,
  BadRequestError,
  GoneError,
  IrisClient,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  ServiceUnavailableError,
} from '../src/index.js';

const baseUrl = process.env.IRIS_URL;
const apiKey = process.env.IRIS_API_KEY;
const secondKey = process.env.IRIS_SECOND_API_KEY;
if (!baseUrl || !apiKey || !secondKey) {
  throw new Error('set IRIS_URL, IRIS_API_KEY and IRIS_SECOND_API_KEY (see the test driver)');
}

const FIVE_SECONDS = `
for (let i = 1; i <= 5; i++) {
  console.log(\`tick \${i}\`);
  await new Promise((r) => setTimeout(r, 1000));
}
return 5;
`;
const TICKS = [1, 2, 3, 4, 5].map((i) => `[stdout] tick ${i}`);

/** The lines, when each arrived, and when the stream ended (ms). */
async function timedLines(lines: AsyncIterable<string>) {
  const got: string[] = [];
  const at: number[] = [];
  for await (const line of lines) {
    got.push(line);
    at.push(performance.now());
  }
  return { got, at, ended: performance.now() };
}

test('execute answers the contract shape; a failure of the code is data', async () => {
  const iris = new IrisClient({ apiKey, baseUrl });
  const answer = await iris.execute(
    "import { projectId, context } from './iris-prime';\n" +
      "console.log('hello', context.who); console.error('careful');\nreturn { projectId };",
    { sessionId: 's-1', context: { who: 'world' } },
  );
  assert.equal(answer.success, true);
  assert.deepEqual(answer.result.logs, ['[stdout] hello world', '[stderr] careful']);
  assert.match(answer.result.output, /^=== Results ===\n\{\n {2}"projectId": "ts-client"\n\}/);
  assert.match(answer.sandboxId ?? '', /^sb_/);
  assert.equal(answer.result.metadata.sandboxId, answer.sandboxId);
  assert.equal(answer.result.metadata.sessionId, 's-1');
  assert.equal(answer.result.error, undefined);
  const failed = await iris.execute('null.x', { sandboxId: answer.sandboxId! });
  assert.equal(failed.result.success, false);
  assert.equal(failed.result.error?.name, 'TypeError');
  const python = await iris.execute('print(6 * 7)', { language: 'python', sandboxId: answer.sandboxId! });
  assert.equal(python.result.output, '=== Output ===\n42');
});

test('keepState carries names to the next execution, and says when it could not', async () => {
  const iris = new IrisClient({ apiKey, baseUrl });
  const first = await iris.execute('const seen: number = 41;', { keepState: true });
  const sandboxId = first.sandboxId!;
  const again = await iris.execute('return seen + 1', { keepState: true, sandboxId });
  assert.equal(again.result.output, '=== Results ===\n42');
  assert.equal(again.result.metadata.stateReset, false);
  await iris.execute('process.exit(1)', { keepState: true, sandboxId });
  const reset = await iris.execute('return typeof seen', { keepState: true, sandboxId });
  assert.equal(reset.result.metadata.stateReset, true);
  assert.equal(reset.result.metadata.stateResetReason, 'exit');
  assert.equal(reset.result.output, '=== Results ===\n"undefined"');
});

test('sandboxes are read, reused and closed', async () => {
  const iris = new IrisClient({ apiKey: secondKey, baseUrl });
  const first = await iris.execute("require('fs').writeFileSync('note.txt', 'kept'); return 1");
  const sandboxId = first.sandboxId!;
  const again = await iris.execute("return require('fs').readFileSync('note.txt', 'utf8')", { sandboxId });
  assert.equal(again.result.output, '=== Results ===\n"kept"');
  const alive = await iris.getSandbox(sandboxId);
  assert.deepEqual([alive.active, alive.status, alive.totalActive], [true, 'running', 1]);
  assert.equal((await iris.closeSandbox(sandboxId)).message, `Sandbox ${sandboxId} closed`);
  assert.equal((await iris.getSandbox(sandboxId)).status, 'closed');
  await assert.rejects(iris.execute('return 1', { sandboxId }), (error: unknown) => {
    assert.ok(error instanceof GoneError);
    assert.equal(error.reason, 'closed');
    assert.ok(error.goneAt);
    return true;
  });
  await iris.execute('return 1');
  await iris.execute('return 2');
  const listed = await iris.listSandboxes();
  assert.deepEqual(listed.sandboxes.map((s) => s.status), ['running', 'running', 'closed']);
  assert.equal(listed.sandboxes.at(-1)!.sandboxId, sandboxId); // newest first
  const page = await iris.listSandboxes({ limit: 2 });
  assert.equal(page.sandboxes.length, 2);
  const rest = await iris.listSandboxes({ limit: 2, cursor: page.nextCursor! });
  assert.deepEqual(rest.sandboxes.map((s) => s.sandboxId), [sandboxId]);
  const history = await iris.listExecutions({ sandboxId });
  assert.deepEqual(history.executions.map((e) => e.status), ['succeeded', 'succeeded']);
  assert.equal((await iris.closeAllSandboxes()).closed, 2);
});

test('errors are typed with status, message and requestId', async () => {
  const stranger = new IrisClient({ apiKey: 'sk_live_' + 'x'.repeat(43), baseUrl });
  await assert.rejects(stranger.execute('return 1'), (error: unknown) => {
    assert.ok(error instanceof AuthenticationError);
    assert.equal(error.status, 401);
    assert.equal(error.message, 'Invalid or inactive API key');
    assert.match(error.requestId ?? '', /^req_/);
    assert.ok(error.hint);
    return true;
  });
  const iris = new IrisClient({ apiKey, baseUrl });
  await assert.rejects(iris.getSandbox('sb_' + 'z'.repeat(20)), NotFoundError);
  await assert.rejects(iris.execute('return 1', { projectId: 'someone-else' }), PermissionDeniedError);
  await assert.rejects(iris.execute(''), BadRequestError);
  await assert.rejects(iris.execute('x'.repeat(100 * 1024 + 1)), PayloadTooLargeError);
  await assert.rejects(iris.getExecution('ex_' + '0'.repeat(20)), NotFoundError);
  await assert.rejects(async () => {
    for await (const line of iris.streamLogs('ex_' + '0'.repeat(20))) assert.fail(line);
  }, NotFoundError);
});

test('a retry after a lost answer does not run the code twice', async () => {
  const direct = new IrisClient({ apiKey, baseUrl });
  const sandboxId = (await direct.execute('return 0')).sandboxId!;
  const count =
    "const fs = require('fs'); fs.appendFileSync('runs', 'x'); return fs.readFileSync('runs', 'utf8').length";
  const keys: string[] = [];
  let lost = 0;
  // The first answer is lost on the way back, after the server ran the code.
  const losingFetch: typeof fetch = async (input, init) => {
    keys.push(new Headers(init?.headers).get('idempotency-key') ?? '');
    const response = await fetch(input, init);
    if (lost++ === 0) {
      await response.text();
      throw new TypeError('fetch failed');
    }
    return response;
  };
  const iris = new IrisClient({ apiKey, baseUrl, fetch: losingFetch });
  const answer = await iris.execute(count, { sandboxId });
  assert.equal(keys.length, 2);
  assert.ok(keys[0]);
  assert.equal(keys[1], keys[0]); // the retry sent the first attempt's key
  assert.equal(answer.result.output, '=== Results ===\n1'); // the first run's answer, replayed
  assert.equal((await direct.execute(count, { sandboxId })).result.output, '=== Results ===\n2');
});

test('a 503 with Retry-After is waited for and retried with the same key', async () => {
  const keys: string[] = [];
  // As the service answers when its sandbox provider is unavailable: once, then the real server.
  const unavailableOnce: typeof fetch = async (input, init) => {
    keys.push(new Headers(init?.headers).get('idempotency-key') ?? '');
    if (keys.length === 1) {
      const body = JSON.stringify({ error: 'Service Unavailable', message: 'retry shortly' });
      return new Response(body, { status: 503, headers: { 'Retry-After': '1' } });
    }
    return fetch(input, init);
  };
  const iris = new IrisClient({ apiKey, baseUrl, fetch: unavailableOnce });
  const started = performance.now();
  const answer = await iris.execute("return 'second time lucky'");
  assert.ok(performance.now() - started >= 1000, 'Retry-After was honoured');
  assert.equal(answer.result.output, '=== Results ===\n"second time lucky"');
  assert.equal(keys.length, 2);
  assert.ok(keys[0]);
  assert.equal(keys[1], keys[0]);
});

test('a 503 that stays is a typed error once the retries are spent', async () => {
  let calls = 0;
  const alwaysUnavailable: typeof fetch = async () => {
    calls += 1;
    const body = JSON.stringify({ error: 'Service Unavailable', message: 'retry shortly', requestId: 'req_x' });
    return new Response(body, { status: 503, headers: { 'Retry-After': '0' } });
  };
  const iris = new IrisClient({ apiKey, baseUrl, fetch: alwaysUnavailable, maxRetries: 2 });
  await assert.rejects(iris.getSandbox('sb_' + 'z'.repeat(20)), (error: unknown) => {
    assert.ok(error instanceof ServiceUnavailableError);
    assert.deepEqual([error.status, error.retryAfter, error.requestId], [503, 0, 'req_x']);
    return true;
  });
  assert.equal(calls, 3);
});

test('log lines stream as they are printed', async () => {
  const iris = new IrisClient({ apiKey, baseUrl });
  const submitted = await iris.submit(FIVE_SECONDS);
  assert.ok(['queued', 'running'].includes(submitted.status));
  const { got, at, ended } = await timedLines(iris.streamLogs(submitted.executionId));
  assert.deepEqual(got, TICKS);
  assert.ok(ended - at[0]! >= 2000, `first line at ${at[0]}, end at ${ended}`);
  const final = await iris.getExecution(submitted.executionId);
  assert.equal(final.status, 'succeeded');
  assert.equal(final.success, true);
  assert.match(final.result?.output ?? '', /^=== Results ===\n5\n/);
  assert.equal(final.result?.metadata.executionId, submitted.executionId);
});

test('polling reads the same lines live', async () => {
  const iris = new IrisClient({ apiKey, baseUrl, logStream: 'poll' });
  const submitted = await iris.submit(FIVE_SECONDS);
  const { got, at, ended } = await timedLines(iris.streamLogs(submitted.executionId));
  assert.deepEqual(got, TICKS);
  assert.ok(ended - at[0]! >= 2000, `first line at ${at[0]}, end at ${ended}`);
});

test('where the events route is missing (as on AWS) the stream polls', async () => {
  const urls: string[] = [];
  // API Gateway answers a path it has no route for with a 403 of its own.
  const gatewayFetch: typeof fetch = async (input, init) => {
    const url = String(input);
    urls.push(url);
    if (url.endsWith('/events')) {
      const body = JSON.stringify({ error: 'Bad Request', message: 'Missing Authentication Token' });
      return new Response(body, { status: 403, headers: { 'Content-Type': 'application/json' } });
    }
    return fetch(input, init);
  };
  const direct = new IrisClient({ apiKey, baseUrl });
  const submitted = await direct.submit(
    "console.log('a'); await new Promise(r => setTimeout(r, 500)); console.log('b')",
  );
  const iris = new IrisClient({ apiKey, baseUrl, fetch: gatewayFetch, pollIntervalMs: 200 });
  const lines: string[] = [];
  for await (const line of iris.streamLogs(submitted.executionId)) lines.push(line);
  assert.deepEqual(lines, ['[stdout] a', '[stdout] b']);
  assert.ok(urls[0]!.endsWith('/events'));
  assert.ok(urls.slice(1).some((url) => url.includes('?after=')));
});

test('a cut stream resumes after the last line, none lost, none twice', async () => {
  const resumedFrom: (string | null)[] = [];
  let streams = 0;
  // The first stream breaks (as a dropped connection) once it has passed two log events.
  const cuttingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!String(input).endsWith('/events')) return response;
    resumedFrom.push(new Headers(init?.headers).get('last-event-id'));
    if (streams++ > 0 || !response.body) return response;
    const reader = response.body.getReader();
    let passed = '';
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (passed.split('event: log').length - 1 >= 2) {
          await reader.cancel();
          return controller.error(new TypeError('terminated'));
        }
        const { done, value } = await reader.read();
        if (done) return controller.close();
        passed += new TextDecoder().decode(value);
        controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const direct = new IrisClient({ apiKey, baseUrl });
  const submitted = await direct.submit(
    'for (let i = 1; i <= 6; i++) { console.log(`line ${i}`); await new Promise(r => setTimeout(r, 300)); }',
  );
  const iris = new IrisClient({ apiKey, baseUrl, fetch: cuttingFetch });
  const lines: string[] = [];
  for await (const line of iris.streamLogs(submitted.executionId)) lines.push(line);
  assert.deepEqual(lines, [1, 2, 3, 4, 5, 6].map((i) => `[stdout] line ${i}`));
  assert.equal(resumedFrom.length, 2);
  assert.equal(resumedFrom[0], null);
  assert.ok(Number(resumedFrom[1]) >= 2, `resumed from ${resumedFrom[1]}`);
});
