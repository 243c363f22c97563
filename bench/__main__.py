"""`make bench`: every benchmark, each printing its figures."""

from bench import console, e2b, execution, load, patterns, state, tenants

if __name__ == "__main__":
    execution.main()
    print()
    print("== throughput under load (bench/load.py, 50 clients for 20 s)")
    load.main(["--seconds", "20"])
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
