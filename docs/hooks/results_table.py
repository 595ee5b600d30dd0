"""MkDocs hook: show the README's results table (written by scripts/results_table.py between its
marker comments) on docs/reproducing.md, its report links made relative to docs/.

The README stays the one place the table is written; this copies it into the site at build time."""

from __future__ import annotations

from pathlib import Path

PAGE = "reproducing.md"
PLACEHOLDER = "<!-- the README's results table is inserted here when the site is built (docs/hooks/results_table.py) -->"
START, END = "<!-- results table: drawn from", "<!-- end of the results table -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"docs/{PAGE} lost the line where the results table goes: {PLACEHOLDER}")
    readme = (Path(config["config_file_path"]).parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n", readme.index(START)) + 1
    table = readme[start:readme.index(END)].strip()
    return markdown.replace(PLACEHOLDER, table.replace("](docs/", "]("))
