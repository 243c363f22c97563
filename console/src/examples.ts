// Starting points: the seed's usage examples (seed/E2B_INTEGRATION.md), a Python one, a
// long-running one that shows live logs, and one that fails (to see a stack).
import type { Language } from "./editor";

export interface Example {
  id: string;
  title: string;
  language: Language;
  code: string;
}

export const EXAMPLES: Example[] = [
  {
    id: "patterns",
    title: "Example 1: Pattern discovery",
    language: "typescript",
    code: `import { iris, projectId } from './iris-prime';

async function analyzePatterns() {
  console.log('Analyzing patterns for project:', projectId);

  const patterns = await iris.discoverPatterns({
    minSupport: 0.4,
    minConfidence: 0.8,
    maxPatterns: 20
  });

  console.log('Found', patterns.length, 'patterns');

  // Log discovery as telemetry
  await iris.logEvent('pattern_discovery_completed', {
    patternsFound: patterns.length
  });

  await iris.close();
  return patterns;
}

return await analyzePatterns();
`,
  },
  {
    id: "multi-agent",
    title: "Example 2: Multi-agent workflow",
    language: "typescript",
    code: `import { iris, sessionId } from './iris-prime';

async function multiAgentWorkflow() {
  // Step 1: Each agent evaluates
  const agents = ['analyst', 'validator', 'optimizer'];
  const evaluations = [];

  for (const agent of agents) {
    const result = await iris.evaluateOutput(
      'input-data',
      'processed-data',
      'correct'
    );
    evaluations.push({ agent, result });
  }

  // Step 2: Consensus voting
  const consensusId = sessionId || 'consensus-' + Date.now();
  for (const agent of agents) {
    await iris.submitVote(consensusId, agent, 'approve');
  }

  // Step 3: Track complete workflow
  await iris.trackLineage('multi-agent-workflow', {
    agents,
    evaluations
  }, {
    consensusId,
    approved: true
  });

  await iris.close();
  console.log('Workflow completed!');
  return { consensusId };
}

return await multiAgentWorkflow();
`,
  },
  {
    id: "prompts",
    title: "Example 3: Prompt evolution",
    language: "typescript",
    code: `import { iris } from './iris-prime';

async function evolvePrompts() {
  // Create base prompt
  await iris.savePrompt(
    'analysis-v1',
    'Analyze {data} for {aspect}',
    ['data', 'aspect']
  );

  // Test and evaluate
  const evaluation = await iris.evaluateOutput(
    'test-data',
    'test-output',
    'partial'
  );

  if (evaluation.verdict !== 'correct') {
    // Create improved version
    await iris.savePrompt(
      'analysis-v2',
      'Deeply analyze {data} with focus on {aspect} and {context}',
      ['data', 'aspect', 'context']
    );
  }

  // Track evolution
  const root = await iris.trackLineage('prompt-evolution', {
    version: 'v1'
  }, {
    version: 'v2',
    improvement: 'Added context parameter'
  });
  await iris.recordMetric('prompt_score', evaluation.score, { prompt: 'analysis-v1' });

  await iris.close();
  return root;
}

return await evolvePrompts();
`,
  },
  {
    id: "python",
    title: "Python: metrics and an event",
    language: "python",
    code: `from iris_prime import iris, session_id

for score in (0.6, 0.8, 0.9):
    iris.record_metric("quality", score, {"source": "console"})
iris.log_event("python_run", {"session": session_id or "none"})
print("recorded 3 values of quality")
return iris.get_metrics("quality")
`,
  },
  {
    id: "slow",
    title: "Live logs: a 3-second program",
    language: "typescript",
    code: `for (let i = 1; i <= 3; i++) {
  console.log('tick', i);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
return 'done';
`,
  },
  {
    id: "error",
    title: "An error with a stack",
    language: "typescript",
    code: `function parse(text: string) {
  return JSON.parse(text);
}
console.error('about to fail');
parse('{not json');
`,
  },
];
