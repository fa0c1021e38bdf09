"""MkDocs hooks: the pipeline file reference's key tables, and the CLI reference's examples.

``<!-- pipeline-keys -->`` in a page becomes one table per TOML table of the pipeline file:
every key, its default and whether it enters the fingerprint, read from the dataclasses in
:mod:`pairgen.spec.config`, so the reference cannot drift from the code.

The commands' ``Example:`` blocks (click's ``\\b`` paragraphs, which mkdocs-click leaves as one
paragraph) become code blocks, one command a line, as ``--help`` prints them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

MARK = "<!-- pipeline-keys -->"


def _value(value: Any) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        value = dict(value)  # split fractions
    return f"`{json.dumps(value.value if hasattr(value, 'value') else value, default=str)}`"


def pipeline_tables() -> str:
    from pairgen.spec.config import BuildConfig

    config = BuildConfig()
    hashed = config.to_dict(hashed=True)
    top, tables = [], []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            rows = [f"| `{k.name}` | {_value(getattr(value, k.name))} | {'yes' if k.name in hashed.get(f.name, {}) else 'no'} |"
                    for k in dataclasses.fields(value)]
            tables.append(f"### `[{f.name}]`\n\n{doc}\n\n| key | default | fingerprinted |\n|---|---|---|\n" + "\n".join(rows))
        else:
            top.append(f"| `{f.name}` | {_value(value)} | {'yes' if f.name in hashed else 'no'} |")
    return ("### Top level\n\n| key | default | fingerprinted |\n|---|---|---|\n" + "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n")


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARK, pipeline_tables()) if MARK in markdown else markdown


_EXAMPLE = re.compile(r"<p>(Examples?:)\n(.*?)</p>", re.S)


def on_page_content(html: str, **_: Any) -> str:
    def block(m: re.Match[str]) -> str:
        lines = [ln.strip() for ln in m.group(2).splitlines() if ln.strip()]
        return f"<p>{m.group(1)}</p><pre><code>" + "\n".join(lines) + "</code></pre>"

    return _EXAMPLE.sub(block, html)
