"""Move `@champion` on purpose: point models:/<tracking.registered_model>@champion at a version.

    python -m pipeline.promote exp-<experiment>   # the champion a DVC experiment registered
    python -m pipeline.promote workspace          # the last uncommitted workspace's champion
    python -m pipeline.promote --version 7        # any registered version

`predict --champion` and `mlflow models serve -m models:/<name>@champion` then use it. The report
stage moves `@champion` itself only in the workspace on a committed HEAD (pipeline.stages.report).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.config import load_params
from pipeline.entry import exit_code

CHAMPION = "champion"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.promote",
        description="Point the registered model's @champion alias at another version.",
    )
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("alias", nargs="?", help="an alias of the version, e.g. exp-<name>")
    choice.add_argument("--version", type=int, metavar="N", help="a version number")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)

    def work() -> None:
        from pipeline import tracking

        name = load_params().tracking.registered_model
        chosen = tracking.model_version(name, alias=args.alias, version=args.version)
        if CHAMPION in chosen["aliases"]:
            print(f"{name}@{CHAMPION} is already version {chosen['version']}")
            return
        tracking.set_alias(name, CHAMPION, chosen["version"])
        model = chosen["tags"].get("pipeline.model", "?")
        print(f"{name}@{CHAMPION} is now version {chosen['version']} ({model})")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
