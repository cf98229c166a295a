"""Does a regenerated table reproduce the committed one? A check that works across CPU kinds.

Bit-for-bit regeneration holds on the kind of CPU that made a table; on another kind the RL runs
move by float rounding and the check has to be statistical. For every CSV table a run wrote (under
``figures/``, or a folder), :func:`check_tables` compares it with the committed version (``git show
HEAD:<path>``, or the same file under another folder) and gives one verdict:

* ``identical``: the same bytes;
* ``within intervals``: the values differ, but every value that carries an interval lies inside
  the combined interval of the two, |new - old| <= h_old + h_new (h: the half-width of each
  table's interval, so the two intervals overlap);
* ``outside``: some do; they are listed (column, row, old, new, combined half-width);
* ``changed, no intervals``: the values differ and none carries an interval (nothing to judge);
* ``not comparable``: the rows or columns differ (a table of another shape), or ``missing`` /
  ``new`` when only one side has it.

A value carries an interval when its table has, for column ``X``: ``X_ci`` or ``X_seed_ci`` (a
half-width), ``<prefix>_seed_ci`` for ``<prefix>_diff``, ``X_low`` / ``X_high`` or ``X_hboot_low``
/ ``X_hboot_high`` (bounds). Rows are matched by their text columns and the id columns in
:data:`ID_COLUMNS`. :func:`exit_code` fails the check only when more than ``max_outside`` of all
values with an interval fall outside (the share a regeneration on another CPU kind was measured
at is far below it; RESULTS.md gives the figures).
"""
from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ID_COLUMNS = ("seed", "value", "row", "k", "threshold", "bucket", "quintile", "lam", "tau", "rho")
MAX_OUTSIDE = 0.02
"""The share of values with an interval that may fall outside before the check fails."""


@dataclass
class TableCheck:
    path: str
    verdict: str
    n_values: int = 0                          # values with an interval compared
    outside: list = field(default_factory=list)   # (column, row key, old, new, combined half-width)
    note: str = ""


def committed_text(path: Path, repo: Path) -> str | None:
    """The committed (HEAD) version of ``path`` inside the git checkout ``repo``; None when HEAD
    has no such file."""
    rel = Path(path).resolve().relative_to(Path(repo).resolve()).as_posix()
    r = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{rel}"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def _interval(df: pd.DataFrame, col: str) -> pd.Series | None:
    """Half-width of ``col``'s interval per row, or None when the table has none for it."""
    for half in (f"{col}_ci", f"{col}_seed_ci", f"{col.removesuffix('_diff')}_seed_ci" if col.endswith("_diff")
                 else None):
        if half and half in df and half != col:
            return pd.to_numeric(df[half], errors="coerce").abs()
    for lo, hi in ((f"{col}_low", f"{col}_high"), (f"{col}_hboot_low", f"{col}_hboot_high")):
        if lo in df and hi in df:
            return (pd.to_numeric(df[hi], errors="coerce") - pd.to_numeric(df[lo], errors="coerce")).abs() / 2
    return None


def _keys(df: pd.DataFrame) -> list[str]:
    """The columns that name a row: text labels (not the per-seed value lists) and the id columns."""
    text = lambda c: df[c].dtype == object or pd.api.types.is_string_dtype(df[c])   # noqa: E731
    return [c for c in df.columns if (text(c) and "per_seed" not in c) or c in ID_COLUMNS]


def compare_table(new: pd.DataFrame, old: pd.DataFrame, path: str = "") -> TableCheck:
    """The verdict for two versions of one table (not byte-identical: the caller checks that). A
    column only one side has is left out of the comparison and named in the note."""
    common = [c for c in old.columns if c in new.columns]
    added, dropped = [c for c in new.columns if c not in old.columns], [c for c in old.columns if c not in new.columns]
    note = "; ".join(f"{what}: {len(cols)} columns ({', '.join(cols[:3])}{' ...' if len(cols) > 3 else ''})"
                     for what, cols in (("new", added), ("gone", dropped)) if cols)
    old, new = old[common], new[common]
    if len(new) != len(old):
        return TableCheck(path, "not comparable", note=f"{len(old)} rows -> {len(new)}")
    keys = _keys(old)
    if keys and not old.duplicated(keys).any() and not new.duplicated(keys).any():
        try:
            new = new.set_index(keys).loc[old.set_index(keys).index].reset_index()
        except KeyError:
            return TableCheck(path, "not comparable", note=f"other rows (keys {keys})")
        except ValueError:       # keys not unique after all (NaN labels): keep the file's order
            pass
        old = old.set_index(keys).reset_index()
    numeric = [c for c in old.columns if c not in keys and pd.api.types.is_numeric_dtype(old[c])]
    n, outside, changed = 0, [], False
    for col in numeric:
        a, b = pd.to_numeric(old[col], errors="coerce"), pd.to_numeric(new[col], errors="coerce")
        changed |= not np.allclose(a.fillna(0), b.fillna(0), rtol=0, atol=0) or not a.isna().equals(b.isna())
        ha, hb = _interval(old, col), _interval(new, col)
        if ha is None or hb is None:
            continue
        ok = a.notna() & b.notna() & ha.notna() & hb.notna()
        n += int(ok.sum())
        bad = ok & ((b - a).abs() > ha + hb + 1e-12)
        for i in np.flatnonzero(bad.to_numpy()):
            row = " ".join(str(old[k].iloc[i]) for k in keys) or f"row {i}"
            outside.append((col, row, float(a.iloc[i]), float(b.iloc[i]), float(ha.iloc[i] + hb.iloc[i])))
    if outside:
        return TableCheck(path, "outside", n, outside, note)
    if not changed:
        return TableCheck(path, "identical values", n, note=note or "same values, other formatting")
    return TableCheck(path, "within intervals" if n else "changed, no intervals", n, note=note)


def check_tables(folder, pattern: str = "*.csv", against=None, repo=None) -> list[TableCheck]:
    """Verdicts for every table under ``folder`` matching ``pattern`` against its committed version
    in the git checkout ``repo`` (default: the folder's checkout), or against the same relative path
    under the folder ``against``. Committed tables the run did not write are listed as ``missing``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder of tables")
    if against is None:
        repo = Path(repo) if repo else git_root(folder)
    out = []
    for path in sorted(folder.rglob(pattern)):
        rel = path.relative_to(folder).as_posix()
        text = path.read_text()
        if against is not None:
            ref = Path(against) / rel
            old = ref.read_text() if ref.exists() else None
        else:
            old = committed_text(path, repo)
        if old is None:
            out.append(TableCheck(rel, "new"))
        elif old == text:
            out.append(TableCheck(rel, "identical"))
        else:
            out.append(compare_table(pd.read_csv(io.StringIO(text)), pd.read_csv(io.StringIO(old)), rel))
    if against is not None:
        have = {c.path for c in out}
        out += [TableCheck(p.relative_to(against).as_posix(), "missing") for p in sorted(Path(against).rglob(pattern))
                if p.relative_to(against).as_posix() not in have]
    return out


def git_root(folder: Path) -> Path:
    r = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError(f"{folder} is not inside a git checkout: pass against=<folder of committed tables>")
    return Path(r.stdout.strip())


def share_outside(checks: list[TableCheck]) -> tuple[int, int]:
    """(values outside, values with an interval compared), over all tables."""
    return sum(len(c.outside) for c in checks), sum(c.n_values for c in checks)


def exit_code(checks: list[TableCheck], max_outside: float = MAX_OUTSIDE) -> int:
    """0 unless more than ``max_outside`` of the values with an interval fall outside."""
    bad, n = share_outside(checks)
    return 1 if n and bad / n > max_outside else 0


def report(checks: list[TableCheck], max_outside: float = MAX_OUTSIDE, show: int = 5) -> str:
    """A few lines per table that is not identical, and a summary line."""
    lines = []
    for c in checks:
        if c.verdict == "identical":
            continue
        extra = f" ({c.n_values} values with an interval)" if c.n_values else ""
        lines.append(f"{c.verdict:22s} {c.path}{extra}{': ' + c.note if c.note else ''}")
        for col, row, a, b, h in c.outside[:show]:
            lines.append(f"    {col} [{row}]: {a:.6g} -> {b:.6g} (|diff| {abs(b - a):.3g} > {h:.3g})")
        if len(c.outside) > show:
            lines.append(f"    ... and {len(c.outside) - show} more")
    counts = pd.Series([c.verdict for c in checks]).value_counts().to_dict() if checks else {}
    bad, n = share_outside(checks)
    share = bad / n if n else 0.0
    lines.append(f"{len(checks)} tables: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                 + f"; {bad} of {n} values with an interval outside ({share:.2%}; the check fails above "
                   f"{max_outside:.0%})")
    return "\n".join(lines)
