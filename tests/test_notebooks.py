"""Every notebook runs end to end with papermill on the tiny profile and writes its tables."""
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_profile(nb, tmp_path):
    out = tmp_path / "figures"
    # every notebook takes these; papermill injects ones a notebook does not declare harmlessly
    params = {"profile": "tiny", "out_dir": str(out), "cache_dir": str(tmp_path / "cache"), "threads": 1,
              "runs_dir": str(tmp_path / "runs"), "seeds": [0, 1]}
    declared = papermill.inspect_notebook(str(nb))
    papermill.execute_notebook(str(nb), str(tmp_path / nb.name), kernel_name="python3",
                               parameters={k: v for k, v in params.items() if k in declared},
                               cwd=str(nb.parent), progress_bar=False)
    written = sorted(p.name for p in out.iterdir())
    assert any(n.endswith(".csv") for n in written) and any(n.endswith(".png") for n in written), written
