"""`make bench`: every benchmark, each printing its figures."""

from bench import execution, patterns, tenants

if __name__ == "__main__":
    execution.main()
    print()
    patterns.main()
    print()
    tenants.main()
