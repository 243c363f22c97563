// The seed's example 2 (a multi-agent workflow). Run it with a sessionId: it names the vote.
import { iris, sessionId } from './iris-prime';

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
}

await multiAgentWorkflow();
