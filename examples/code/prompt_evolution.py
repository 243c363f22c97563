# The seed's example 3 (prompt evolution) in Python.
from iris_prime import iris


def evolve_prompts():
    # Create base prompt
    iris.save_prompt("analysis-v1", "Analyze {data} for {aspect}", ["data", "aspect"])

    # Test and evaluate
    evaluation = iris.evaluate_output("test-data", "test-output", "partial")

    if evaluation["verdict"] != "correct":
        # Create improved version
        iris.save_prompt(
            "analysis-v2",
            "Deeply analyze {data} with focus on {aspect} and {context}",
            ["data", "aspect", "context"],
        )

    # Track evolution
    iris.track_lineage(
        "prompt-evolution",
        {"version": "v1"},
        {"version": "v2", "improvement": "Added context parameter"},
    )

    iris.close()


evolve_prompts()
