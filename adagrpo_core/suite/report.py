"""An HTML page of a run: the answers at a glance, the key figures, and every executed notebook.

``reproduce.sh`` calls :func:`write_run_report` at its end (``python -m adagrpo_core.suite.report
<run folder> <profile>``). In the run folder (``notebooks/executed/<profile>/``) it converts each
executed notebook to HTML with nbconvert, next to it, and writes ``index.html``: the headline
table of README.md (the answers, with their key numbers and seed counts), the profile's key
figures that the run's figures folder holds (referenced by relative path, so the page works
where the checkout is), and a link to each notebook's page. :func:`broken_links` lists the
references of a page that point nowhere (the test of this module uses it).
"""
from __future__ import annotations

import html
import re
import sys
from os.path import relpath
from pathlib import Path

import mistune
import nbformat
from nbconvert import HTMLExporter

from ..common.paths import default_figures_dir, repo_root
from ..configs import get_profile
from ..common.storage import atomic_write_text
from .glance import answer_changes

KEY_FIGURES = [
    ("nb08_phase_bias_{p}.png", "The reward-error phase diagram: gain over continued NLL of each method along "
                                "the exposure-bias dial, each seed a point (notebook 08)"),
    ("nb06_frontier_{p}.png", "The retrieval-validity frontier: the mixture over lambda against AdaGRPO (notebook 06)"),
    ("nb06_frontier_ctr_{p}.png", "The frontier in simulated CTR (notebook 06)"),
    ("nb03_hr10_by_method_{p}.png", "HR@10 by method, each seed a point (notebook 03)"),
    ("nb04_hr10_vs_admission_{p}.png", "HR@10 against the admission rate: AdaGRPO and its controls (notebook 04)"),
    ("nb05_tau_rho_{p}.png", "Sensitivity to the gate's thresholds tau and rho (notebook 05)"),
    ("nb07_roc_{p}.png", "Do truth-free diagnostics find the accurate rewards? ROC curves (notebook 07)"),
    ("nb07_admission_by_bucket_{p}.png", "What the gate admits, by exposure bucket (notebook 07)"),
]
"""The figures the page shows when the run's figures folder has them, in this order."""


def headline_table(readme: Path) -> str:
    """The first Markdown table after README.md's "The headline" paragraph, as Markdown ('' if none)."""
    text = Path(readme).read_text(encoding="utf-8") if Path(readme).exists() else ""
    start = text.find("The headline")
    m = re.search(r"((?:^\|.*\|\s*$\n?)+)", text[start:] if start >= 0 else "", flags=re.M)
    return m.group(1) if m else ""


def _relink(markdown: str, base: Path, page_dir: Path) -> str:
    """Markdown links relative to ``base`` (README's folder) made relative to the page's folder."""
    def fix(m):
        target = m.group(1)
        if re.match(r"[a-z]+:|#|/", target):
            return m.group(0)
        return f"]({relpath(Path(base).resolve() / target, Path(page_dir).resolve())})"
    return re.sub(r"\]\(([^()\s]+)\)", fix, markdown)


def convert_notebooks(run_dir: Path) -> list[Path]:
    """Each executed notebook of ``run_dir`` as HTML next to it (nbconvert's classic page)."""
    exporter = HTMLExporter()
    pages = []
    for nb_path in sorted(Path(run_dir).glob("*.ipynb")):
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        page = nb_path.with_suffix(".html")
        atomic_write_text(page, body)
        pages.append(page)
    return pages


def write_run_report(run_dir, profile: str, figures_dir=None, readme=None) -> Path:
    """Convert the run's notebooks and write ``<run_dir>/index.html``; returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run_dir={str(run_dir)!r} is not a folder of executed notebooks")
    figures_dir = Path(figures_dir) if figures_dir else default_figures_dir() / get_profile(profile).figures_subdir
    readme = Path(readme) if readme else (repo_root() or Path(".")) / "README.md"
    pages = convert_notebooks(run_dir)
    table = _relink(headline_table(readme), readme.parent, run_dir)
    parts = [f"<h1>AdaGRPO: the {html.escape(profile)} run</h1>",
             "<p>What the suite answers (README.md's headline, from the paper profile's tables; this run's own "
             "numbers are in each notebook's \"What the numbers say\").</p>",
             mistune.html(table) if table else "<p>(README.md has no headline table.)</p>",
             *_answers_now(), "<h2>Key figures</h2>"]
    shown = 0
    for pattern, caption in KEY_FIGURES:
        fig = figures_dir / pattern.format(p=profile)
        if fig.exists():
            src = html.escape(relpath(fig.resolve(), run_dir.resolve()))
            parts.append(f'<figure><img src="{src}" alt="{html.escape(fig.name)}" style="max-width:900px">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            shown += 1
    if not shown:
        parts.append(f"<p>(No key figure of this profile in {html.escape(str(figures_dir))}.)</p>")
    parts.append("<h2>Executed notebooks</h2><ul>")
    parts += [f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>' for p in pages]
    parts.append("</ul>")
    page = run_dir / "index.html"
    atomic_write_text(page, "<!doctype html><html><head><meta charset='utf-8'><title>AdaGRPO "
                      f"{html.escape(profile)} run</title></head><body>" + "\n".join(parts) + "</body></html>\n")
    return page


def _answers_now() -> list[str]:
    """This run's answers beside the committed ones: each answer's words read from the checkout's
    tables as they are now (a paper run has rewritten them) and from their committed versions
    (``glance.answer_changes``, what ``cli check --answers`` prints)."""
    try:
        changes = answer_changes(default_figures_dir())
    except ValueError as e:               # not a git checkout: nothing committed to compare with
        return [f"<p>(The answers are not compared with committed tables: {html.escape(str(e))}.)</p>"]
    moved = int(changes.changed.sum())
    return ["<h2>This run's answers beside the committed ones</h2>",
            f"<p>{moved} of {len(changes)} answers change their words.</p>",
            changes[["answer", "before", "after", "changed", "number after"]].to_html(index=False, escape=True)]


def broken_links(page) -> list[str]:
    """The ``src`` and ``href`` references of an HTML page (relative ones) that point to no file."""
    page = Path(page)
    refs = re.findall(r'(?:src|href)="([^"#:]+)"', page.read_text(encoding="utf-8"))
    return [r for r in refs if not (page.parent / html.unescape(r)).exists()]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m adagrpo_core.suite.report <run folder> <profile>", file=sys.stderr)
        return 2
    page = write_run_report(argv[0], argv[1])
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
