"""The documentation: the site builds strictly (no broken link, anchor or nav entry, every API page
renders from its docstrings), and the README stays a short front page whose links all resolve."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT

README = ROOT / "README.md"
INSTALL = 'python3 -m venv .venv && .venv/bin/pip install -e ".[test]"'
TESTS = ".venv/bin/python -m pytest -n 2"
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title"), ![alt](src)
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")  # [label]: target
INLINE_CODE = re.compile(r"(`+).*?\1")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed: where a link is a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def relative_links(text: str) -> list[str]:
    targets = []
    for line in prose_lines(text):
        targets += LINK.findall(line)
        targets += REFERENCE.findall(line)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http(s):, mailto:, ...


def code_blocks(text: str) -> list[str]:
    blocks, current = [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict` (mkdocs.yml: broken links and anchors, pages missing from the nav or
    nav entries without a page, griffe's docstring warnings all fail it). About 2 s."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    for module in ["lpc.samplers.langevin", "lpc.samplers.preconditioners", "lpc.samplers.mala", "lpc.samplers.hmc",
                   "lpc.samplers.chain", "lpc.model.energy", "lpc.model.likelihoods", "lpc.model.priors",
                   "lpc.methods.warmstart", "lpc.methods.lpc", "lpc.methods.vae", "lpc.evaluation.ais",
                   "lpc.evaluation.elbo", "lpc.reporting.significance"]:
        assert f'id="{module}"' in api, f"the API reference lost {module}"
    assert 'id="lpc.evaluation.ais.AIS"' in api
    # the README's sections and results table reach the site; the run records are not pages
    assert "decoder evals / update" in (site / "index.html").read_text()
    assert "sign count: verdict" in (site / "reproducing" / "index.html").read_text()
    assert not (site / "results" / "lpc_vs_vae" / "runs").exists()


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail into docs/ (at most 250)"


def test_every_relative_link_in_the_readme_resolves():
    targets = relative_links(README.read_text())
    assert targets, "no relative links found: the link parser is broken"
    missing = []
    for target in targets:
        path = target.split("#", 1)[0]
        if path and not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to paths that do not exist: {missing}"


def test_the_readme_starts_with_set_up_then_the_main_job():
    text = README.read_text()
    assert text.startswith("```"), "README.md must open with the set-up commands"
    first = code_blocks(text)[0]
    assert INSTALL in first and TESTS in first
    assert first.index(INSTALL) < first.index(TESTS)
    assert "python train.py" in first
    assert "python train.py model=pc_langevin precond=adam" in text


def test_the_link_parser():
    text = ('[a](docs/a.md) ![img](docs/b.png "title") [c](https://x.org/y) [d](docs/c.md#part)\n'
            "`[e](not/a/link.md)`\n```\n[f](in/code.md)\n```\n[g]: docs/ref.md\n[h](#anchor)")
    assert relative_links(text) == ["docs/a.md", "docs/b.png", "docs/c.md#part", "docs/ref.md", "#anchor"]


def test_the_wandb_page_shows_the_dashboards_as_the_code_defines_them():
    from lpc.reporting import dashboards

    assert dashboards.outline() in (ROOT / "docs" / "wandb.md").read_text()


def test_the_readme_names_each_method_presets_model_class_warmstart_and_sampler():
    """The README's method table is what each configs/method/ preset composes to."""
    from lpc.config.compose import compose_config

    rows = [line.split("|")[1:-1] for line in README.read_text().splitlines() if line.startswith("| `") and line.count("|") == 6]
    rows = {cells[0].strip(" `"): [c.strip(" `") for c in cells[1:]] for cells in rows if cells[0].strip(" `") != "method="}
    presets = sorted(p.stem for p in (ROOT / "configs" / "method").glob("*.yaml"))
    assert sorted(rows) == presets
    for preset in presets:
        cfg = compose_config([f"method={preset}"], ROOT / "outputs" / "docs_check")
        model, target, warmstart, sampler = rows[preset]
        choices = cfg.hydra.runtime.choices
        assert (choices["model"], cfg.model._target_) == (model, target), preset
        if model in ("pc_langevin", "pc"):
            assert (choices["warmstart"], choices["sampler"]) == (warmstart, sampler), preset
