"""Result tables: CSV at full precision and Markdown with counts as integers and p-values short."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype

from ..common.storage import atomic_write_text


_COUNT_COLUMNS = {"n", "seed", "seeds", "step", "steps", "users", "items", "impressions", "clicks", "examples",
                  "interactions", "count", "impressions_examined", "clicks_examined", "bucket_items",
                  "min_train_exposure", "max_train_exposure", "dropped_users"}


def is_count_column(name) -> bool:
    """A column that holds counts (n, seeds, users, ``*_hits``, ``n_*`` ...): printed as integers."""
    name = str(name)
    return name in _COUNT_COLUMNS or name.endswith("_hits") or name.startswith("n_")


def is_p_value_column(name) -> bool:
    """A column of p-values (``p``, ``*mcnemar_p*``, ``*p_holm*``)."""
    name = str(name)
    return name == "p" or "mcnemar_p" in name or "p_holm" in name


def format_p_value(p) -> str:
    """'<1e-4' below 1e-4, else 4 significant digits ('nan' for a missing value)."""
    if p is None or not np.isfinite(p):
        return "nan"
    return "<1e-4" if p < 1e-4 else f"{p:#.4g}"


def markdown_table(df, floatfmt: str = ".4f") -> str:
    """A DataFrame as a Markdown table (no index): integer columns and integral-valued count
    columns as integers, p-value columns as :func:`format_p_value`, other numbers with
    ``floatfmt``, text left-aligned and numbers right-aligned."""
    if len(df) == 0 or len(df.columns) == 0:
        return df.to_markdown(index=False)
    cols, align = {}, []
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        if is_bool_dtype(col.dtype) or not (is_integer_dtype(col.dtype) or is_float_dtype(col.dtype)):
            cols[i] = ["" if v is None else str(v) for v in col]
            align.append("left")
            continue
        v = col.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = v[np.isfinite(v)]
        if is_integer_dtype(col.dtype):
            cols[i] = [str(x) for x in col]
        elif is_p_value_column(name):
            cols[i] = [format_p_value(x) for x in v]
        elif is_count_column(name) and np.array_equal(finite, np.round(finite)):
            cols[i] = [str(int(x)) if np.isfinite(x) else "nan" for x in v]
        else:
            cols[i] = [format(x, floatfmt) for x in v]
        align.append("right")
    table = pd.DataFrame(cols, index=range(len(df)))
    table.columns = [str(c) for c in df.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


def save_table(df, out_dir: str | os.PathLike, name: str, floatfmt: str = ".4f", note: str | None = None) -> None:
    """Write a table as ``name.csv`` (full precision) and ``name.md`` (:func:`markdown_table`:
    counts as integers, p-values as '<1e-4' or 4 significant digits) in out_dir, each atomically.
    ``note``: a paragraph printed under the markdown table (e.g. what a real dataset's table
    cannot say)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out / f"{name}.md", markdown_table(df, floatfmt) + "\n" + (f"\n{note}\n" if note else ""))


