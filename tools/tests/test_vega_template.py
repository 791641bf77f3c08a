"""The offline DVC plots template: built from npm tarballs, the versions dvc-render loads."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from dvc_render import vega

from pipeline.errors import PipelineError
from tools import vega_template


def npm_tarball(folder: Path, name: str, version: str, code: str) -> Path:
    """A minimal `npm pack` output: package.json, a browser build, a LICENSE."""
    files = {
        "package/package.json": json.dumps(
            {"name": name, "version": version, "license": "BSD-3-Clause", "jsdelivr": "b.js"}
        ),
        "package/b.js": code,
        "package/LICENSE": f"licence of {name}",
    }
    path = folder / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_page_inlines_the_builds_in_loading_order(tmp_path: Path) -> None:
    tarballs = [
        npm_tarball(tmp_path, name, "1.0.0", f"window['{name}']=1;")
        for name in reversed(vega_template.PACKAGES)
    ]
    scripts = {}
    for tarball in tarballs:
        manifest, code, license_text = vega_template.read_package(tarball)
        assert license_text == f"licence of {manifest['name']}"
        scripts[manifest["name"]] = (manifest, code)
    page = vega_template.page(scripts)
    positions = [page.index(f"window['{name}']=1;") for name in vega_template.PACKAGES]
    assert positions == sorted(positions)
    assert "{plot_divs}" in page and "{scripts}" not in page


def test_a_build_that_would_end_its_script_element_is_refused(tmp_path: Path) -> None:
    tarball = npm_tarball(tmp_path, "vega", "1.0.0", "x='</script>'")
    manifest, code, _ = vega_template.read_package(tarball)
    with pytest.raises(PipelineError, match="vega"):
        vega_template.page({"vega": (manifest, code)})


def test_shipped_template_holds_the_versions_dvc_render_would_load() -> None:
    page = vega_template.TEMPLATE.read_text()
    wanted = dict(re.findall(r"npm/([a-z-]+)@([\d.]+)", vega.VegaRenderer.SCRIPTS))
    shipped = dict(re.findall(r"<!-- ([a-z-]+)@([\d.]+) ", page))
    assert shipped == wanted
    for name in wanted:
        assert (vega_template.LICENSES / f"LICENSE-{name}").read_text().startswith("Copyright")
    assert "cdn" not in page.split("<script>")[0].lower()
