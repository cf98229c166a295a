"""The planner (suite/plan.py, `cli plan`, `reproduce.sh <profile> --plan`): what each notebook pass
of reproduce.sh trains, what is cached, the projection from a kind's measured rates, and the cap
that keeps the paper profile's budget from creeping back. That the plan equals the runs the
notebooks train is checked where the tiny notebooks run (tests/test_notebooks.py)."""
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from adagrpo_core import cli
from adagrpo_core.common.machine import check_one_kind, kind_digest, kind_name, machine_kind
from adagrpo_core.suite import plan as plan_module
from adagrpo_core.suite.plan import (
    PAPER_RUN_CAP,
    notebook_plan,
    passes,
    plan_table,
    profile_plan,
    rate_for,
    run_class,
    run_seconds,
)

ROOT = Path(__file__).resolve().parent.parent
RATE = {"steps": 4, "G": 4, "run_seconds": {"nll": 1.0, "ungated": 3.0, "gated": 2.0}, "ranker_seconds": 10.0,
        "member_seconds": 5.0, "notebook_seconds": {"01_world_and_ranker": 100.0}}


def test_the_paper_plan_stays_under_its_cap(tmp_path):
    """From empty caches, reproduce.sh paper trains at most PAPER_RUN_CAP RL runs, and notebook 06
    trains nothing of its own (its runs are 03's and 05's, under the same keys)."""
    table = plan_table(profile_plan("paper", runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache")))
    total = table.set_index("notebook").loc["total"]
    assert 0 < total.to_train <= PAPER_RUN_CAP, f"the paper plan trains {total.to_train} runs; its cap is {PAPER_RUN_CAP}"
    row = table.set_index("notebook")
    assert row.loc["06_frontier", "to_train"] == 0 and row.loc["06_frontier", "shared"] == row.loc["06_frontier", "runs"]
    assert "08_reward_phase_diagram[reliability]" in row.index and row.loc["08_reward_phase_diagram[reliability]", "to_train"] > 0


def test_a_run_counts_once_and_a_cached_one_trains_no_more(tmp_path):
    args = {"runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}
    plans = profile_plan("tiny", **args)
    table = plan_table(plans).set_index("notebook")
    unique = {s.out_dir for p in plans for s in p.specs}
    assert table.loc["total", "runs"] - table.loc["total", "shared"] == len(unique) == table.loc["total", "to_train"]
    done = next(iter(sorted(unique)))                    # one finished run: the plan reads it back
    Path(done).mkdir(parents=True)
    (Path(done) / "results.csv").write_text("method\nnll\n")
    again = plan_table(profile_plan("tiny", **args)).set_index("notebook")
    assert again.loc["total", "cached"] == 1 and again.loc["total", "to_train"] == len(unique) - 1
    assert not (tmp_path / "cache").exists()               # the planner built nothing


def test_the_projection_sums_the_rates_of_what_is_not_cached(tmp_path):
    plans = [notebook_plan("04_controls", "tiny", runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"),
                           seeds=[0])]
    specs = plans[0].specs
    want = sum({"nll": 1.0, "ungated": 3.0, "gated": 2.0}[run_class(s)] for s in specs) + 10.0   # + its ranker
    assert plan_table(plans, RATE).projected_s.iloc[0] == pytest.approx(want)
    assert {run_class(s) for s in specs} == {"gated", "ungated"}          # grpo is ungated, the rest gated
    s = specs[0]
    twice = replace(s, rl=replace(s.rl, steps=8))
    assert run_seconds(twice, RATE) == pytest.approx(2 * run_seconds(s, RATE))
    assert plan_table(plans).projected_s.isna().all()     # no rate: no number, not a zero


def test_a_rate_is_taken_from_this_kind_then_its_name_else_none():
    rates = {"kinds": {"aaa": {"name": "AMD EPYC, AVX-512", "profiles": {"paper": RATE}},
                       "bbb": {"name": "Intel Xeon, AVX-512", "profiles": {"quick": RATE}}}}
    assert rate_for(rates, "paper", "aaa", "x")[0] is RATE
    rate, source = rate_for(rates, "paper", "zzz", "AMD EPYC, AVX-512")
    assert rate is RATE and "another machine" in source
    rate, source = rate_for(rates, "paper", "zzz", "Intel Xeon, AVX-512")
    assert rate is None and "no rate for the paper profile" in source


def test_reproduce_runs_the_passes_the_planner_counts():
    assert [nb for nb, _ in passes("quick")] == [nb for nb, o in plan_module.PASSES if not o]
    assert ("08_reward_phase_diagram", {"gates": "reliability"}) in passes("paper")
    script = (ROOT / "reproduce.sh").read_text()
    assert 'passes=("" "reliability")' in script and '"$profile" = "paper"' in script and "--plan" in script


def test_cli_plan_prints_the_table_and_trains_nothing(tmp_path, capsys):
    assert cli.main(["plan", "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "c"),
                     "--write", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "03_main_results" in text and "total" in text and kind_name() in text
    table = pd.read_csv(tmp_path / "out" / "plan_tiny.csv")
    assert table.notebook.iloc[-1] == "total" and table.to_train.iloc[-1] > 0
    assert not (tmp_path / "runs").exists() and not (tmp_path / "c").exists()


def test_a_bad_notebook_or_parameter_is_named():
    with pytest.raises(ValueError, match="no parameters \\['tua'\\]"):
        notebook_plan("05_sensitivity", "tiny", tua=0.5)
    with pytest.raises(ValueError, match="seeds"):
        notebook_plan("04_controls", "tiny", seeds=[1, 1])
    with pytest.raises(ValueError, match="no notebook '99_nope'"):
        notebook_plan("99_nope", "tiny")


def test_the_committed_rates_name_their_kind():
    rates = json.loads((ROOT / plan_module.RATES_FILE).read_text())
    for digest, entry in rates["kinds"].items():
        assert digest == kind_digest(entry["kind"]) and entry["name"] == kind_name(entry["kind"])
        for prof in entry["profiles"].values():
            assert set(prof["run_seconds"]) == {"nll", "ungated", "gated"} and prof["measured"]


def test_the_machine_kind_and_its_digest():
    kind = machine_kind(threads=1)
    assert kind["threads"] == 1 and kind_digest(kind) == kind_digest(dict(kind)) and len(kind_digest(kind)) == 12
    assert kind_digest({**kind, "threads": 2}) != kind_digest(kind)         # the thread count is part of the kind
    assert kind_name({**kind, "cpu_model": "AMD EPYC 9R14", "isa": ["avx2", "avx512f"]}) == "AMD EPYC, AVX-512"
    assert kind_name({**kind, "cpu_model": "Intel(R) Xeon(R) Platinum", "isa": ["avx2"]}) == "Intel Xeon, AVX2"
    assert check_one_kind(["abc", "abc", None]) == "abc" and check_one_kind([None, float("nan")]) is None
    with pytest.raises(ValueError, match="'abc', 'def'"):
        check_one_kind(["abc", "def"])
