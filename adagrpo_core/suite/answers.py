"""Where an answer is decided: the methods, dial values and seeds of ``suite.answer_points``.

The suite runs most rows at ``suite.seeds`` (three); the comparisons that decide an answer run at
``suite.answer_seeds`` (ten on the paper profile). :func:`answer_methods` tells a notebook which of
its methods take the extra seeds at a point; ``phase.answer_plans`` plans every such run with the
notebooks' own keys and folders, so ``scripts/answer_seeds.py`` can train them ahead of the
notebooks.
"""
from __future__ import annotations

from ..configs import ANSWER_TABLES, Profile
from ..runs import MethodSpec

__all__ = ["answer_methods", "extra_seeds", "with_answer_seeds"]


def answer_methods(profile: Profile, table: str, value: float | None = None) -> list[str]:
    """The method names of ``table`` (one of ``configs.ANSWER_TABLES``) that run at the answer seeds,
    at dial ``value`` for notebook 08's tables ([] where the point is not listed)."""
    if table not in ANSWER_TABLES:
        raise ValueError(f"table must be one of {list(ANSWER_TABLES)}, got table={table!r}")
    point = profile.suite.answer_points.get(table)
    if not point:
        return []
    values = point.get("values")
    if values is not None and (value is None or float(value) not in [float(v) for v in values]):
        return []
    return list(point["methods"])


def extra_seeds(profile: Profile, seeds) -> list[int]:
    """The answer seeds that ``seeds`` lacks, in the suite's order."""
    return [s for s in profile.suite.answer_seeds if s not in list(seeds)]


def with_answer_seeds(profile: Profile, methods: list[MethodSpec], seeds, table: str,
                      value: float | None = None) -> list[tuple[list[MethodSpec], list[int]]]:
    """[(methods, seeds), ...] to plan: every method at ``seeds``, then the answer point's methods
    (those of ``methods`` listed for ``table`` at ``value``; oracle only at 0.5) at the answer seeds
    that ``seeds`` lacks. A random control keeps the gate it copies in its group."""
    groups = [(list(methods), list(seeds))]
    names = set(answer_methods(profile, table, value))
    more = extra_seeds(profile, seeds)
    chosen = [m for m in methods if m.name in names]
    for m in list(chosen):                     # a matched control needs its gate's run at the same seed
        need = m.match or ("adagrpo" if m.method == "random" else None)
        if need and need not in [c.name for c in chosen]:
            chosen += [c for c in methods if c.name == need]
    if more and chosen:
        groups.append((chosen, more))
    return groups
