"""figures/README.md lists every committed file, the answers-at-a-glance blocks of RESULTS.md and
README.md match the committed tables, and no figure or table link in either is broken."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from adagrpo_core.suite.figure_index import describe, index_text, seeds_of, tracked_files
from adagrpo_core.suite.glance import (ANSWERS, END, FINDINGS_END, FINDINGS_START, START, Answer, findings, glance_row,
                                       glance_table, replace_block)
from adagrpo_core.suite.replicates import VARIANCE_END, VARIANCE_START, variance_block
from adagrpo_core.suite.notebook import PARAMETERS_END, PARAMETERS_START, notebook_defaults, parameters_table

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"


def _expand(name: str) -> list[str]:
    m = re.fullmatch(r"(.*)\.\{(.*)\}", name)
    return [f"{m.group(1)}.{e}" for e in m.group(2).split(",")] if m else [name]


def test_figure_index_is_current_and_lists_every_file():
    committed = (FIGURES / "README.md").read_text()
    assert committed == index_text(FIGURES), "figures/README.md is stale: python -m adagrpo_core.cli index"
    listed = set()
    for sub, name in re.findall(r"^## `([^`]*)/`.*?$|^\| \[([^\]]+)\]", committed, flags=re.M):
        if sub:
            folder = sub
        else:
            listed |= {f"{folder}/{n}" for n in _expand(name)}
    files = {f.relative_to(FIGURES).as_posix() for f in tracked_files(FIGURES)}
    assert files and files == listed
    for f in files:
        assert (FIGURES / f).is_file(), f


def test_figure_index_describes_and_counts_seeds(tmp_path):
    assert "bias dial (reliability gates)" in describe("nb08_phase_bias_reliability_paper")[0]
    assert describe("nb03_headline_quick")[1] == "notebook 03_main_results"
    assert describe("sft_vs_most_popular_amazon")[1] == "python -m adagrpo_core.cli reproduce"    # not sft_*'s script
    assert describe("sft_test_amazon")[1] == "scripts/sft_amazon.py"
    assert describe("nb02_table1_aggregate_amazon_test")[0].startswith("the paper's Table 1")
    with pytest.raises(ValueError, match="no description of the file stem 'mystery_quick'"):
        describe("mystery_quick")
    pd.DataFrame({"method": ["a", "b", "c"], "seeds": [3, 10, 3]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"method": ["a"]}).to_csv(tmp_path / "u.csv", index=False)
    assert seeds_of(tmp_path / "t.csv") == "3-10" and seeds_of(tmp_path / "u.csv") == ""


def test_answers_blocks_match_the_tables():
    block = glance_table(FIGURES)
    assert len(block.splitlines()) == len(ANSWERS) + 2
    for doc in ("RESULTS.md", "README.md"):
        text = (ROOT / doc).read_text()
        assert replace_block(text, block, doc) == text, f"{doc}: python -m adagrpo_core.cli answers"
    assert (ROOT / "RESULTS.md").read_text().index(START) < 1500        # RESULTS opens with it


def test_answer_words_follow_the_interval(tmp_path):
    a = Answer("(z)", "q?", "t.csv", {"method": "m"}, "gain", "gain_ci", ("up", "tie", "down"), "f.png", "x",
               share="share")
    for gain, ci, word in ((0.02, 0.01, "up"), (0.005, 0.01, "tie"), (-0.02, 0.01, "down")):
        pd.DataFrame({"method": ["m", "n"], "gain": [gain, 9.0], "gain_ci": [ci, 0.0], "seeds": [10, 3],
                      "share": [0.7, 0.0]}).to_csv(tmp_path / "t.csv", index=False)
        row = glance_row(a, tmp_path)
        assert row["short answer"] == word and row["seeds"] == "10 (7 below 0)"
        assert row["figure"] == "[f](figures/f.png)" and f"{gain:+.4f} ± {ci:.4f}" in row["key number"]
    pd.DataFrame({"method": ["m", "m"], "gain": [1, 2], "gain_ci": [0, 0], "seeds": [1, 1],
                  "share": [0, 0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"\(z\): t.csv has 2 rows"):
        glance_row(a, tmp_path)
    with pytest.raises(ValueError, match="has no <!-- answers:start -->"):
        replace_block("no block", "x", "DOC.md")
    assert replace_block(f"a\n{START}\nold\n{END}\nb", "new", "d") == f"a\n{START}\nnew\n{END}\nb"


@pytest.mark.parametrize("doc", ["RESULTS.md", "README.md"])
def test_no_broken_figure_link(doc):
    text = (ROOT / doc).read_text()
    links = re.findall(r"\]\(([^()\s]+)\)", text)
    assert links, doc
    broken = [t for t in links if not re.match(r"[a-z]+:|#", t) and not (ROOT / t.split("#")[0]).exists()]
    assert not broken, broken
    images = re.findall(r"!\[[^\]]*\]\(([^()\s]+)\)", text)
    if doc == "RESULTS.md":
        assert len(images) >= 8, "every answer section shows its key figure"
    # a path named in the text (not linked) exists too, or, as a prefix or pattern, matches a file
    for ref in set(re.findall(r"figures/[A-Za-z0-9_./=,*<>{}\-]+", text)):
        ref = ref.rstrip(".,")
        if ref.startswith("figures/smoke") or "..." in ref:
            continue
        pattern = re.sub(r"\*+", "*", re.sub(r"<[^>]*>|\{[^}]*\}", "*", ref) + "*")
        assert list(ROOT.glob(pattern)), f"{doc}: {ref}"


def test_the_replicate_block_of_results_matches_its_table():
    """RESULTS.md's replicate pilot block is written by `cli answers` from replicates_variance_paper.csv."""
    text = (ROOT / "RESULTS.md").read_text()
    assert VARIANCE_START in text and VARIANCE_END in text
    block = variance_block(FIGURES)
    assert replace_block(text, block, "RESULTS.md", VARIANCE_START, VARIANCE_END) == text, \
        "RESULTS.md: python -m adagrpo_core.cli answers"
    assert block.startswith("| comparison") and "(c) (sim_ctr)" in block


def test_the_readme_parameters_table_is_current():
    """README's "Running a sweep" table lists every parameter of every notebook's parameters cell."""
    text = (ROOT / "README.md").read_text()
    table = parameters_table(ROOT / "notebooks")
    assert replace_block(text, table, "README.md", PARAMETERS_START, PARAMETERS_END) == text, \
        "README.md: python -m adagrpo_core.cli answers"
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        for name in notebook_defaults(path):
            assert f"| `{name}` |" in table, (path.name, name)


def test_the_index_puts_the_paper_first_links_pictures_and_names_what_each_table_replicates():
    text = (FIGURES / "README.md").read_text()
    heads = re.findall(r"^## `([^`]+)/`", text, flags=re.M)
    assert heads[0] == "paper" and heads.index("paper") < heads.index("quick") < heads.index("amazon")
    rows = [r for r in text.splitlines() if r.startswith("| [")]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        name, link = re.match(r"\[([^\]]+)\]\(([^)]+)\)", cells[0]).groups()
        if "png" in name:
            assert link.endswith(".png"), r                      # the picture, not the PDF
        if "csv" in name:
            assert cells[4], f"a table without what it replicates over: {r}"
    for a in ANSWERS:                                             # every answer's table names it
        row = next(r for r in rows if f"]({a.table})" in r or f"]({a.table[:-4]}.png)" in r)
        assert a.answer in row.split("|")[3], (a.answer, row)


def test_readme_opens_with_a_front_page_written_from_the_tables():
    """One screen before the first heading: the findings (generated from the answers table), a
    picture and the two commands; the findings block matches the committed tables."""
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("## "))
    front = "\n".join(lines[:first])
    assert first <= 45 and re.search(r"!\[[^\]]*\]\(figures/[^)]+\.png\)", front)
    assert "bash reproduce.sh " in front and "bash scripts/run_tests.sh" in front
    assert replace_block(text, findings(FIGURES), "README.md", FINDINGS_START, FINDINGS_END) == text, \
        "README.md: python -m adagrpo_core.cli answers"
    assert findings(FIGURES).count("\n- **") == 4                    # five findings
