# The seed's example 1 (pattern discovery) in Python: run with "language": "python".
from iris_prime import iris, project_id


def analyze_patterns():
    print("Analyzing patterns for project:", project_id)

    patterns = iris.discover_patterns(min_support=0.4, min_confidence=0.8, max_patterns=20)

    print("Found", len(patterns), "patterns")

    # Log discovery as telemetry
    iris.log_event("pattern_discovery_completed", {"patternsFound": len(patterns)})

    iris.close()
    return patterns


analyze_patterns()
