# The seed's batch operations in Python (a top-level return is allowed in the sandbox).
from concurrent.futures import ThreadPoolExecutor

from iris_prime import iris

# Multiple operations in one execution
with ThreadPoolExecutor() as pool:
    patterns = pool.submit(iris.discover_patterns, min_support=0.3)
    prompt = pool.submit(iris.get_prompt, "my-template")
    evaluation = pool.submit(iris.evaluate_output, "input", "output", "correct")

iris.close()
return {"patterns": patterns.result(), "prompt": prompt.result(), "evaluation": evaluation.result()}
