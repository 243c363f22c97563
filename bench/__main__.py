"""`make bench`: every benchmark, each printing its figures."""

from bench import console, e2b, execution, patterns, state, tenants

if __name__ == "__main__":
    execution.main()
    print()
    state.main()
    print()
    patterns.main()
    print()
    console.main()
    print()
    e2b.main()
    print()
    tenants.main()
