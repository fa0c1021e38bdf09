"""The documentation site (mkdocs.yml, docs/) and the README's first screen.

The site is built with ``mkdocs build --strict`` as ``make docs`` does (a broken link, a
missing reference or a docstring griffe cannot read fails it), then every public name and
every command is looked up in the built pages, and a few pages are opened in headless
Chromium (``tests/browser.py``): no console error, no request outside the site, images shown.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import chromium_path, open_page, region_is_blank

import pairgen
from pairgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [n for n in pairgen.__all__ if n != "__version__"]
needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or
                                  importlib.util.find_spec("mkdocstrings") is None,
                                  reason="the docs extra is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_the_api_page_names_every_public_function_at_its_home() -> None:
    entries = set(re.findall(r"^::: (\S+)$", (ROOT / "docs" / "reference" / "api.md").read_text(), re.M))
    assert [n for n in PUBLIC if f"{pairgen._EXPORTS[n]}.{n}" not in entries] == []


def test_the_cli_page_documents_the_whole_command_group() -> None:
    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert ":module: pairgen.cli" in text and ":command: main" in text and ":depth: 1" in text


@needs_mkdocs
def test_the_built_site_has_a_reference_entry_for_every_public_name_and_command(site: Path) -> None:
    api = (site / "reference" / "api.html").read_text()
    assert [n for n in PUBLIC if f'id="{pairgen._EXPORTS[n]}.{n}"' not in api] == []
    cli = (site / "reference" / "cli.html").read_text()
    assert sorted(main.commands) and [c for c in sorted(main.commands) if f'id="pairgen-{c}"' not in cli] == []
    assert "Write one self-contained HTML page about DIR" in cli
    assert "<p>Example:</p><pre><code>pairgen report build/mnist-demo --out report.html\n" in cli  # one command a line
    # the pipeline reference's key tables are generated from BuildConfig
    pipeline = (site / "reference" / "pipeline.html").read_text()
    assert "positives_per_image" in pipeline and "records_per_shard" in pipeline
    # nothing in the site is fetched from elsewhere: no web font, no CDN script or stylesheet
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', text), page


@needs_mkdocs
@pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")
@pytest.mark.parametrize("page", ["index.html", "getting-started.html", "reference/api.html", "reference/cli.html"])
def test_site_pages_render_in_chromium_without_errors_or_outside_requests(site: Path, page: str) -> None:
    view = open_page((site / page).as_uri(), max_height=3000)
    assert view.errors == []
    assert view.external_requests((site.as_uri() + "/",)) == []
    assert view.requests and all(u.startswith(("file:", "data:")) for u in view.requests)
    if page == "getting-started.html":  # the report screenshot is shown
        assert "pairgen report build/mnist-demo --out report.html" in view.text
        shots = [i for i in view.images if "report" in i["src"] or i["naturalWidth"] > 1000]
        assert shots and all(i["complete"] and i["naturalWidth"] > 0 for i in shots)
        assert not any(region_is_blank(view.screenshot, i) for i in shots
                       if i["y"] + i["height"] <= view.screenshot.shape[0])
    if page == "reference/api.html":
        assert "pairgen.load_numpy" in view.text and "Parameters:" in view.text and "Args:" not in view.text
    # a gray page would mean the stylesheet did not load: the header bar is colored
    top = view.screenshot[5:40, :, :].reshape(-1, 3).astype(int)
    assert (np.ptp(top, axis=1) > 40).mean() > 0.5


def test_readme_first_screen_says_what_pairgen_is_the_two_commands_and_where_the_guides_are() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    first = "\n".join(lines[:45])
    assert lines[0] == "# pairgen" and "Siamese networks and metric learning" in first
    assert next(ln for ln in lines if ln.startswith("## ")) == "## Two commands"
    assert "make demo" in first and "make test" in first
    assert "docs/getting-started.md" in first and "docs/guides/" in first and "make docs" in first
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", "\n".join(lines))
    assert links and [p for p in links if not (ROOT / p).exists()] == []


def test_the_screenshots_in_the_docs_are_small_pngs_of_something() -> None:
    for name in ("report.png", "site.png"):
        path = ROOT / "docs" / "images" / name
        assert path.stat().st_size < 400_000, name
        image = cv2.imread(str(path))
        assert image is not None and image.shape[1] >= 800 and int(image.std()) > 10
