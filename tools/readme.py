"""Copy the report stage's results table (reports/results.md) into README.md between markers.

    python -m tools.readme

`make results` runs it after a full `dvc repro`, so the README's numbers come from a real run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline import io, paths
from pipeline.entry import exit_code
from pipeline.errors import PipelineError

START = "<!-- results:start (written by `make results` from reports/results.md) -->"
END = "<!-- results:end -->"


def splice(readme: str, results: str) -> str:
    """README text with the block between START and END replaced by `results`."""
    if START not in readme or END not in readme:
        raise PipelineError(f"README.md: the markers {START!r} and {END!r} are missing")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{results.strip()}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.readme", description=__doc__.split("\n\n")[0]
    )
    parser.parse_args(argv)  # no options: --help prints the usage and writes nothing
    readme, results = paths.ROOT / "README.md", paths.RESULTS

    def work() -> None:
        if not results.is_file():
            raise PipelineError(f"{results}: missing; run `dvc repro` first")
        io.write_text(readme, splice(readme.read_text(), results.read_text()))
        print(f"updated {readme} from {results}")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
