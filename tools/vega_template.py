"""Build DVC's offline plots page template from the npm packages of vega, vega-lite and
vega-embed (the versions dvc-render loads from a CDN), so `dvc plots show` / `diff` draw their
curves without a network.

    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    python -m tools.vega_template vega-5.20.2.tgz vega-lite-5.2.0.tgz vega-embed-6.18.2.tgz

Writes .dvc/plots/offline.html (the three minified builds inline, each after a comment naming
its package, version and licence; `plots.html_template` in .dvc/config names it) and each
package's LICENSE into .dvc/plots/licenses/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

from pipeline import io, paths
from pipeline.entry import exit_code
from pipeline.errors import PipelineError

PACKAGES = ("vega", "vega-lite", "vega-embed")  # the order the page loads them in
TEMPLATE = paths.ROOT / ".dvc" / "plots" / "offline.html"
LICENSES = paths.ROOT / ".dvc" / "plots" / "licenses"
# dvc-render fills {refresh_tag} and {plot_divs}; {scripts} (its CDN tags) is left out on purpose.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
%s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def read_package(tarball: Path) -> tuple[dict, str, str]:
    """(package.json, its minified browser build, its LICENSE) from an `npm pack` tarball."""
    try:
        with tarfile.open(tarball) as archive:

            def text(name: str) -> str:
                member = archive.extractfile(f"package/{name}")
                if member is None:
                    raise KeyError(name)
                return member.read().decode("utf-8")

            manifest = json.loads(text("package.json"))
            return manifest, text(manifest["jsdelivr"]), text("LICENSE")
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as error:
        raise PipelineError(
            f"{tarball}: not an npm package with a browser build ({error})"
        ) from None


def page(scripts: dict[str, tuple[dict, str]]) -> str:
    """The template: every package's build inline, in PACKAGES order."""
    tags = []
    for name in PACKAGES:
        manifest, code = scripts[name]
        if "</script" in code or "{plot_divs}" in code:
            raise PipelineError(f"{name}: its build cannot be inlined in a <script> element")
        label = (
            f"{name}@{manifest['version']} ({manifest['license']}, see licenses/LICENSE-{name})"
        )
        tags.append(f"    <!-- {label} -->\n    <script>{code}</script>")
    return PAGE % "\n".join(tags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.vega_template", description=__doc__)
    parser.add_argument("tarballs", nargs="+", type=Path, help="npm pack outputs")
    args = parser.parse_args(argv)

    def work() -> None:
        found = {}
        for tarball in args.tarballs:
            manifest, code, license_text = read_package(tarball)
            found[manifest["name"]] = (manifest, code, license_text)
        missing = [name for name in PACKAGES if name not in found]
        if missing:
            raise PipelineError(f"missing the npm package(s): {', '.join(missing)}")
        for name in PACKAGES:
            io.write_text(LICENSES / f"LICENSE-{name}", found[name][2])
        io.write_text(TEMPLATE, page({name: found[name][:2] for name in PACKAGES}))
        print(f"wrote {TEMPLATE.relative_to(paths.ROOT)} ({TEMPLATE.stat().st_size:,} bytes)")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
