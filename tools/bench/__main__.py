"""`python -m tools.bench`: run the bench (the command line is in tools.bench.cli)."""

from tools.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
