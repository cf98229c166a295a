"""The reproduction check (regeneration.py, `cli check`) on small hand-built tables: identical,
within the combined interval, outside it, no intervals, other rows, and the committed versions
read from git."""
import subprocess

import pandas as pd
import pytest

from adagrpo_core import cli
from adagrpo_core.suite.regeneration import check_tables, compare_table, exit_code, report

OLD = pd.DataFrame({"method": ["nll", "adagrpo", "random"], "checkpoint": ["best"] * 3,
                    "HR@10": [0.40, 0.42, 0.41], "HR@10_ci": [0.01, 0.01, 0.01],
                    "diff": [0.0, 0.010, -0.002], "diff_seed_ci": [0.0, 0.004, 0.004],
                    "sim_ctr_diff": [0.0, 0.003, 0.001], "sim_ctr_hboot_low": [0.0, 0.001, -0.001],
                    "sim_ctr_hboot_high": [0.0, 0.005, 0.003], "seeds": [3, 3, 3]})


def test_values_inside_the_combined_interval_pass_and_outside_ones_are_listed():
    new = OLD.copy()
    new["HR@10"] = [0.40, 0.435, 0.41]          # |0.015| <= 0.01 + 0.01: inside
    c = compare_table(new, OLD)
    assert c.verdict == "within intervals" and c.n_values == 3 * 2   # HR@10 and diff carry intervals (3 rows each)
    new.loc[2, "diff"] = 0.007                  # |0.009| > 0.004 + 0.004: outside
    c = compare_table(new.iloc[::-1].reset_index(drop=True), OLD)     # rows matched by their labels, not order
    assert c.verdict == "outside"
    assert [(col, row) for col, row, *_ in c.outside] == [("diff", "random best")]
    assert exit_code([c], max_outside=0.2) == 0 and exit_code([c], max_outside=0.1) == 1
    assert "random best" in report([c]) and "1 of 6 values" in report([c])


def test_no_intervals_other_shapes_and_new_columns():
    plain = OLD[["method", "checkpoint", "seeds"]].assign(n=[1, 2, 3])
    changed = plain.assign(n=[1, 2, 4])
    assert compare_table(changed, plain).verdict == "changed, no intervals"
    assert compare_table(OLD.iloc[:2], OLD).verdict == "not comparable"
    wider = OLD.assign(extra=1.0)
    c = compare_table(wider, OLD)
    assert c.verdict == "identical values" and "new: 1 columns (extra)" in c.note


def test_folders_and_the_committed_versions_from_git(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    for d in (ref, run):
        d.mkdir()
        OLD.to_csv(d / "nb03_a_quick.csv", index=False)
    OLD.assign(**{"HR@10": [0.40, 0.50, 0.41]}).to_csv(run / "nb03_b_quick.csv", index=False)
    OLD.to_csv(ref / "nb03_b_quick.csv", index=False)
    OLD.to_csv(ref / "nb04_gone_quick.csv", index=False)
    checks = {c.path: c.verdict for c in check_tables(run, "*_quick*.csv", against=ref)}
    assert checks == {"nb03_a_quick.csv": "identical", "nb03_b_quick.csv": "outside", "nb04_gone_quick.csv": "missing"}
    # in a git checkout the reference is HEAD's version of each file
    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)
    OLD.to_csv(repo / "figures" / "t_quick.csv", index=False)
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)   # noqa: E731
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tables")
    assert [c.verdict for c in check_tables(repo / "figures", "*_quick*.csv")] == ["identical"]
    OLD.assign(**{"HR@10": [0.40, 0.425, 0.41]}).to_csv(repo / "figures" / "t_quick.csv", index=False)
    (repo / "figures" / "u_quick.csv").write_text("a,b\n1,2\n")
    assert [c.verdict for c in check_tables(repo / "figures", "*_quick*.csv")] == ["within intervals", "new"]
    # the command: a report and exit 0 within intervals, 1 when too many values fall outside
    assert cli.main(["check", "--profile", "quick", "--folder", str(run), "--against", str(ref)]) == 1
    assert cli.main(["check", "--profile", "quick", "--folder", str(run), "--against", str(ref),
                     "--max-outside", "0.5"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["check", "--folder", str(run), "--max-outside", "2"])
    with pytest.raises(SystemExit):
        cli.main(["check", "--folder", str(tmp_path / "nowhere")])
