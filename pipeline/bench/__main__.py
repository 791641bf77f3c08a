"""`python -m pipeline.bench`: run the bench (the command line is in pipeline.bench.cli)."""

from pipeline.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
