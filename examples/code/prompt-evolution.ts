// The seed's example 3 (prompt evolution).
import { iris } from './iris-prime';

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
  await iris.trackLineage('prompt-evolution', {
    version: 'v1'
  }, {
    version: 'v2',
    improvement: 'Added context parameter'
  });

  await iris.close();
}

await evolvePrompts();
