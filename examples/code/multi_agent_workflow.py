# The seed's example 2 (a multi-agent workflow) in Python. Run it with a sessionId.
import time

from iris_prime import iris, session_id


def multi_agent_workflow():
    # Step 1: Each agent evaluates
    agents = ["analyst", "validator", "optimizer"]
    evaluations = []

    for agent in agents:
        result = iris.evaluate_output("input-data", "processed-data", "correct")
        evaluations.append({"agent": agent, "result": result})

    # Step 2: Consensus voting
    consensus_id = session_id or f"consensus-{int(time.time() * 1000)}"
    for agent in agents:
        iris.submit_vote(consensus_id, agent, "approve")

    # Step 3: Track complete workflow
    iris.track_lineage(
        "multi-agent-workflow",
        {"agents": agents, "evaluations": evaluations},
        {"consensusId": consensus_id, "approved": True},
    )

    iris.close()
    print("Workflow completed!")


multi_agent_workflow()
