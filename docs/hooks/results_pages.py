"""MkDocs hook: the reports under the repository's top-level ``results/`` (report.md, its figures and
results/README.md; not the run records under ``runs/``) become pages of the site under results/,
so the records stay out of the documentation tree while the reports are browsable beside it.

A report links the documentation as ``../docs/<page>`` (or ``../../docs/<page>``), which is right in
the repository; on the site the pages sit one level up, so those links are rewritten."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

KINDS = {".md", ".png", ".json"}


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for path in sorted((root / "results").rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and path.suffix in KINDS and "runs" not in rel.parts:
            files.append(File(rel.as_posix(), src_dir=str(root), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if not page.file.src_uri.startswith("results/"):
        return markdown
    return markdown.replace("](../../docs/", "](../../").replace("](../docs/", "](../")
