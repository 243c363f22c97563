"""`make bench`: every benchmark, each printing its figures."""

from bench import console, execution, patterns

if __name__ == "__main__":
    execution.main()
    print()
    patterns.main()
    print()
    console.main()
