"""`make bench`: every benchmark, each printing its figures."""

from bench import execution, patterns

if __name__ == "__main__":
    execution.main()
    print()
    patterns.main()
