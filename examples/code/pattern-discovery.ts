// The seed's example 1 (pattern discovery), as it is written there.
import { iris, projectId } from './iris-prime';

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

await analyzePatterns();
