// Runs the seed's first example through the TypeScript client, then follows a longer program
// line by line, reuses its sandbox and closes it.
//
//   cd examples && npm install && ../node_modules/.bin/tsc -p tsconfig.json
//   IRIS_URL=http://127.0.0.1:8000 IRIS_API_KEY=sk_live_... node dist/client.js
import { readFile } from 'node:fs/promises';

import { IrisClient } from '@iris-exec/client';

const TICKS = `
for (let i = 1; i <= 3; i++) {
  console.log(\`tick \${i}\`);
  await new Promise((r) => setTimeout(r, 1000));
}
return 'done';
`;

const iris = new IrisClient(); // IRIS_URL and IRIS_API_KEY from the environment
const seed = await readFile(new URL('../code/pattern-discovery.ts', import.meta.url), 'utf8');
const answer = await iris.execute(seed);
console.log(answer.result.output);
const sandboxId = answer.sandboxId!;

const job = await iris.submit(TICKS, { sandboxId });
for await (const line of iris.streamLogs(job.executionId)) console.log(line); // as it is printed
console.log('status:', (await iris.getExecution(job.executionId)).status);

const python = await iris.execute("print('hello from Python')", { language: 'python', sandboxId });
console.log(python.result.output);

console.log('sandbox active:', (await iris.getSandbox(sandboxId)).active);
console.log((await iris.closeSandbox(sandboxId)).message);
