// The seed's batch operations: several tool calls at once in one execution.
import { iris } from './iris-prime';

// Multiple operations in one execution
const [patterns, prompt, evaluation] = await Promise.all([
  iris.discoverPatterns({ minSupport: 0.3 }),
  iris.getPrompt('my-template'),
  iris.evaluateOutput('input', 'output', 'correct')
]);

await iris.close();
return { patterns, prompt, evaluation };
