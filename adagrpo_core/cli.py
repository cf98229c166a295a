"""Command-line entry points (what a machine without Jupyter uses).

    python -m adagrpo_core.cli reproduce --profile quick          # world, SFT vs most-popular, ranker
    python -m adagrpo_core.cli reproduce --sequences MyShop.txt   # the same on any `user item item ...` file
    python -m adagrpo_core.cli main-results --seeds 0 1 2         # every method x seeds
    python -m adagrpo_core.cli stratified --profile quick         # the paper's Tables 1-3

Every argument is validated before any expensive work; a bad value is a one-line error (exit 2).
Tables are printed and written (CSV + Markdown) under ``--out`` atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from .configs import PROFILES, Profile, get_profile
from .data.sequences import SequencesConfig
from .data.world import exposure_concentration
from .eval.strata import StrataConfig
from .suite.experiments import main_results, sft_reference, world_calibration
from .common.paths import code_commit, default_figures_dir, repo_root
from .common.storage import atomic_write_text
from .pipeline import dataset_profile, get_ranker, get_sids, get_world
from .suite.regeneration import MAX_OUTSIDE, check_tables, exit_code, report
from .suite.figure_index import write_index
from .suite.plan import project
from .suite.replicates import VARIANCE_END, VARIANCE_START, variance_block
from .suite.notebook import PARAMETERS_END, PARAMETERS_START, parameters_table
from .common.machine import kind_digest, kind_name
from .suite.glance import FINDINGS_END, FINDINGS_START, answer_changes, findings, glance_table, replace_block
from .reward.reliability import reliability_report
from .suite.stratified import run_stratified
from .suite.tables import save_table


def tables_dir(out, prof: Profile) -> Path:
    """Where a command writes its tables: ``out/<Profile.figures_subdir>``, as the notebooks do
    (``out/<profile name>/``: ``quick/``, ``paper/``, ``amazon/`` or a dataset file's stem;
    ``out/smoke/`` for a smoke run)."""
    return Path(out) / prof.figures_subdir


def reproduce(profile: str | Profile, out: Path, cache_dir=None) -> int:
    """World summary and exposure bias, semantic IDs, SFT vs the reference baselines
    (``experiments.BASELINES``), ranker reliability. ``profile``: a name or a :class:`Profile`.
    Tables go to ``out``, a real dataset's to ``out/<its name>/``."""

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    profile = prof.name
    out = tables_dir(out, prof)
    sfx = "" if profile == "quick" else f"_{profile}"    # the quick profile's tables keep their names
    t0 = time.perf_counter()
    world = get_world(prof.world, cache_dir, progress=True)
    print(json.dumps(world.summary(), indent=2))
    if hasattr(world, "true_utility"):   # the simulated world: exposure against true demand
        conc = exposure_concentration(world).reset_index()
        print(conc.round(3).to_markdown(index=False))
        save_table(conc, out, f"world_exposure_concentration{sfx}")
    sids = get_sids(world, prof.sid, cache_dir)
    print(f"semantic IDs: {sids.length} tokens, codebooks {sids.codebook_sizes}, "
          f"collisions before the uniqueness token: {sids.collisions_before_uniqueness}")
    if not prof.is_simulated:
        save_table(semantic_ids_summary(prof, sids), out, f"semantic_ids{sfx}")
    ref = sft_reference(prof, cache_dir)
    print(ref[["method", "HR@5", "HR@10", "HR@20", "NDCG@10", "halluc"] +
              [c for c in ("HR@10_unc", "halluc_unc") if c in ref]].round(4).to_markdown(index=False))
    save_table(ref, out, f"sft_vs_most_popular{sfx}")
    ranker = get_ranker(world, prof.ranker, cache_dir)
    report = reliability_report(world, ranker)
    for name, df in report.items():
        df = df.reset_index() if df.index.name else df
        print(f"\nranker reliability: {name}\n" + df.round(4).to_markdown(index=False))
        save_table(df, out, f"ranker_reliability_{name}{sfx}")
    if hasattr(world, "true_utility"):   # the world's calibration targets, measured
        cal = world_calibration(prof, cache_dir)
        print("\nworld calibration\n" + cal.round(4).to_markdown(index=False))
        save_table(cal, out, f"world_calibration{sfx}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; tables in {out}/")
    return 0


def semantic_ids_summary(prof: Profile, sids):
    """One row: where a real dataset's semantic IDs come from, their shape and their collisions."""
    w = prof.world
    if isinstance(w, SequencesConfig):
        source = "file" if w.semantic_ids else f"rqkmeans({w.id_kind})"
    else:
        source = w.semantic_ids
    return pd.DataFrame([{"source": source, "tokens": sids.length,
                          "codebook_sizes": " ".join(map(str, sids.codebook_sizes)),
                          "collisions_before_uniqueness": sids.collisions_before_uniqueness,
                          "max_collision_group": sids.max_collision_group, "items": sids.n_items}])


def main_results_cmd(profile: str, seeds, steps: int | None, out: Path, runs: Path, cache_dir=None,
                     jobs: int = 1, scheduler: str | None = None, batch: int | None = None) -> int:
    """Every method x seeds, best and final checkpoints (``batch``: seeds trained together)."""
    prof = get_profile(profile).with_rl_steps(steps or 0)
    if batch:
        prof = replace(prof, batch=batch)
    rows, summary = main_results(prof, seeds=seeds, out_root=runs / profile, cache_dir=cache_dir, jobs=jobs,
                                 scheduler=scheduler)
    print(summary.round(4).to_markdown(index=False))
    print(f"training time per run: {rows.drop_duplicates('run_dir').train_seconds.median():.0f} s (median)")
    save_table(rows.drop(columns=["run_dir", "train_seconds"]), out, f"main_results_rows_{profile}")
    save_table(summary, out, f"main_results_{profile}")
    return 0


def check_cmd(profile: str, folder: Path | None, against: Path | None, max_outside: float | None,
              answers: bool = False) -> int:
    """Regenerated tables against the committed ones (``regeneration.py``); prints a report. With
    ``answers``: every answer's words recomputed from the tables under ``folder`` (default: the
    checkout's figures/) beside the committed ones' (or ``against``'s), each change listed."""
    share = MAX_OUTSIDE if max_outside is None else max_outside
    if not 0 <= share <= 1:
        raise ValueError(f"--max-outside must be in [0, 1], got --max-outside {max_outside}")
    if answers:
        changes = answer_changes(folder or default_figures_dir(), against)
        moved = changes[changes.changed]
        print(f"{len(changes)} answers: {len(moved)} change their words"
              + (": " + ", ".join(moved.answer) if len(moved) else ""))
        print(changes.to_markdown(index=False))
        return 0
    folder = folder or default_figures_dir() / get_profile(profile).figures_subdir     # figures/<profile>/
    checks = check_tables(folder, "*.csv", against)
    print(report(checks, share))
    return exit_code(checks, share)


def answers_cmd(check: bool) -> int:
    """Rewrite (or with ``check`` compare) the answers block of RESULTS.md and README.md, the
    replicate pilot's block of RESULTS.md, README.md's findings and its table of the notebooks'
    parameters."""
    root = repo_root()
    if root is None:
        raise ValueError("answers: run it from a checkout (RESULTS.md and figures/ are not installed)")
    block, stale = glance_table(default_figures_dir()), []
    for doc in ("RESULTS.md", "README.md"):
        text = (root / doc).read_text()
        new = replace_block(text, block, doc)
        if VARIANCE_START in new:          # RESULTS.md's replicate pilot, generated the same way
            new = replace_block(new, variance_block(default_figures_dir()), doc, VARIANCE_START, VARIANCE_END)
        if FINDINGS_START in new:          # README's front page: the findings in five lines
            new = replace_block(new, findings(default_figures_dir()), doc, FINDINGS_START, FINDINGS_END)
        if PARAMETERS_START in new:        # README's table of the notebooks' parameters
            new = replace_block(new, parameters_table(root / "notebooks"), doc, PARAMETERS_START, PARAMETERS_END)
        if new != text:
            stale.append(doc)
            if not check:
                atomic_write_text(root / doc, new)
    print(("differs from the tables: " if check else "rewrote: ") + ", ".join(stale) if stale else "up to date")
    return 1 if check and stale else 0


def plan_cmd(profile: str, out: Path | None, runs_dir: Path | None, cache_dir: Path | None) -> int:
    """What ``reproduce.sh <profile>`` would train, per notebook pass, and how long it would take
    on this machine (``suite/plan.py``); trains nothing. With ``out`` the table is also written."""
    table, source = project(profile, runs_dir=None if runs_dir is None else str(runs_dir),
                            cache_dir=None if cache_dir is None else str(cache_dir))
    show = table.copy()
    show["projected"] = [f"{s / 60:.0f} min" if s == s else "?" for s in show.projected_s]
    print(f"reproduce.sh {profile}: the runs and rankers of each notebook pass (a run or ranker counts once, in the "
          f"first pass that plans it; cached ones train no more)")
    print(show.drop(columns="projected_s").to_markdown(index=False))
    print(f"machine kind: {kind_name()} ({kind_digest()}); rates: {source}")
    total = table.projected_s.iloc[-1]
    if total == total:
        print(f"projected wall time: {total:.0f} s ({total / 3600:.1f} h) on {os.cpu_count()} cores")
    if out is not None:
        note = (f"`python -m adagrpo_core.cli plan --profile {profile}` at commit {code_commit()}: the RL runs and rankers "
                f"of each notebook pass of `reproduce.sh {profile}` (a run or ranker counts once, in the first pass that "
                f"plans it: `shared` were planned by an earlier pass under the same key), how many the caches hold, and "
                f"the projected wall seconds on {os.cpu_count()} cores of {kind_name()} ({kind_digest()}); rates: {source}.")
        save_table(table.round(1), out, f"plan_{profile}", floatfmt=".0f", note=note)
    return 0


def stratified_cmd(profile: str, out: Path, cache_dir=None, split: str = "test", checkpoint: str = "best",
                   top_n: int = 20, k: int = 10) -> int:
    """Tables 1-3 of the stratified analysis for a profile (what notebook 02 shows, without plots)."""
    prof = get_profile(profile)
    out = tables_dir(out, prof)
    cfg = StrataConfig(top_n=top_n, k=k)          # validated before any expensive work
    t0 = time.perf_counter()
    _, tables = run_stratified(prof, cfg, cache_dir, split, checkpoint)
    for name, df in tables.items():
        print(f"\n{name}\n" + (df.round(4).to_markdown(index=False) if len(df) else "(too few samples)"))
        if len(df):
            save_table(df, out, f"stratified_{name}_{profile}_{split}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; tables in {out}/")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``error: <what> (see <prog> --help)``."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter

    def add_common(parser, defaults: bool):
        # the global options go before or after the command; only the main parser holds the
        # defaults (a subparser's default would overwrite a value given before the command)
        d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
        parser.add_argument("--threads", type=int, default=d(None), help="torch CPU threads (default: torch's own)")
        parser.add_argument("--out", type=Path, default=d(Path("figures")), help="where tables are written")
        parser.add_argument("--profile", choices=list(PROFILES), default=d(None),
                            help="named profile; when omitted: quick, or with --sequences amazon (its model, "
                                 "SFT and ranker settings)")

    common = argparse.ArgumentParser(add_help=False)
    add_common(common, defaults=False)
    p = _Parser(prog="python -m adagrpo_core.cli", formatter_class=fmt,
                                description="AdaGRPO: reward-gated GRPO for generative recommendation.")
    add_common(p, defaults=True)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("reproduce", parents=[common], help="world, SFT vs most-popular, ranker",
                       description="The main job's CLI part: the world and its exposure bias, the semantic IDs, "
                                   "SFT against the reference baselines (most popular), and the ranker's "
                                   "reliability by exposure bucket. With --sequences, the same on any "
                                   "`user item item ...` file, tables in <out>/<name>/.")
    r.add_argument("--sequences", type=Path, default=None, metavar="FILE",
                   help="a `user item item ...` file (1-indexed item ids, chronological) instead of the profile's data")
    r.add_argument("--attributes", type=Path, default=None, metavar="FILE",
                   help="with --sequences: item attributes, {item id: [attribute ids]} JSON")
    r.add_argument("--semantic-ids", type=Path, default=None, metavar="FILE",
                   help="with --sequences: semantic IDs in LETTER's JSON format (default: RQ-KMeans over "
                        "co-occurrence embeddings of the training clicks, plus the attributes when given)")
    r.add_argument("--sft-steps", type=int, default=None, metavar="N",
                   help="with --sequences: SFT steps (default: the profile's)")
    r.add_argument("--name", default=None, help="with --sequences: the dataset's name (default: the file stem)")
    m = sub.add_parser("main-results", parents=[common], formatter_class=fmt, help="every method x seeds",
                       description="Train every method (nll, mixtures, AdaGRPO and its controls) for each seed "
                                   "from one cached SFT base and ranker; best and final checkpoints on test.")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="distinct non-negative RL seeds")
    m.add_argument("--steps", type=int, default=None, help="override the profile's RL steps")
    m.add_argument("--runs", type=Path, default=Path("runs"), help="run folders (resumable)")
    m.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs in parallel (a process pool, one torch thread each)")
    m.add_argument("--scheduler", default=None, help="a Dask scheduler address (tcp://host:port) instead of --jobs")
    m.add_argument("--batch", type=int, default=None, metavar="K",
                   help="train the seeds of each method K at a time on a stacked policy (default: the profile's, "
                        "1 = each run alone; K > 1 pays on a GPU, not on a CPU core)")
    ck = sub.add_parser("check", parents=[common], formatter_class=fmt,
                        help="regenerated tables against the committed ones",
                        description="Compare every table a run wrote with its committed version: identical, "
                                    "within intervals (every value with an interval inside the combined interval "
                                    "of the two), or outside (listed). Exits 1 only when more than --max-outside "
                                    "of the values with an interval fall outside. --profile (default quick) "
                                    "picks the folder figures/<profile>/.")
    ck.add_argument("--folder", type=Path, default=None, help="where the run wrote them (default: figures/<profile>/)")
    ck.add_argument("--against", type=Path, default=None,
                    help="a folder of reference tables instead of the committed (git HEAD) versions")
    ck.add_argument("--answers", action="store_true",
                    help="compare the answers instead (suite/glance.py, worded by the frozen analysis plan): the "
                         "words of each answer read from --folder (default: figures/) beside the committed tables' "
                         "(or --against's, a folder of the same layout), every change listed")
    ck.add_argument("--max-outside", type=float, default=None, metavar="SHARE",
                    help="the share of values with an interval that may fall outside (default 0.02)")
    ix = sub.add_parser("index", parents=[common], formatter_class=fmt, help="rewrite figures/README.md",
                        description="One line for every table and figure under the folder (what it shows, what "
                                    "makes it, how many seeds), written to <folder>/README.md.")
    ix.add_argument("--folder", type=Path, default=None, help="the figures folder (default: the checkout's figures/)")
    an = sub.add_parser("answers", parents=[common], formatter_class=fmt,
                        help="rewrite the answers-at-a-glance table in RESULTS.md and README.md",
                        description="The answers at a glance (suite/glance.py), read from the committed tables "
                                    "under figures/, written between the answers markers of RESULTS.md and README.md.")
    an.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block differs from the tables")
    pl = sub.add_parser("plan", parents=[common], formatter_class=fmt, help="what reproduce.sh would train, and for how long",
                        description="Per notebook pass of reproduce.sh --profile: the RL runs and the rankers it "
                                    "plans, how many are shared with an earlier pass or already cached, and the "
                                    "projected wall time on this machine from the measured rates of its kind "
                                    "(benchmarks/results/run_rates.json). Trains nothing. --profile defaults to quick.")
    pl.add_argument("--runs", type=Path, default=None, help="the run folders (default: the checkout's runs/)")
    pl.add_argument("--cache", type=Path, default=None, help="the artefact cache (default: $ADAGRPO_CACHE or .cache/)")
    pl.add_argument("--write", type=Path, default=None, metavar="FOLDER", help="also write the table (CSV + Markdown) there")
    st = sub.add_parser("stratified", parents=[common], formatter_class=fmt, help="the paper's Tables 1-3",
                        description="The stratified analysis of the SFT base: RM influence overall, by policy "
                                    "difficulty and by difficulty x discriminability.")
    st.add_argument("--split", choices=["test", "valid"], default="test", help="which samples")
    st.add_argument("--checkpoint", choices=["best", "final"], default="best", help="which SFT checkpoint")
    st.add_argument("--top-n", type=int, default=20, help="candidates per sample (beam width)")
    st.add_argument("--k", type=int, default=10, help="K of HR@K")
    return p


def _validate(args) -> None:
    """Every argument, before any expensive work (ValueError naming the argument and value)."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got --threads {args.threads}")
    if args.cmd == "reproduce":
        _validate_sequences(args)
    if args.cmd == "main-results":
        bad = [s for s in args.seeds if s < 0]
        if bad:
            raise ValueError(f"--seeds must be non-negative, got --seeds {' '.join(map(str, args.seeds))}")
        if len(set(args.seeds)) != len(args.seeds):
            raise ValueError(f"--seeds must be distinct (a repeated seed fakes precision), "
                             f"got --seeds {' '.join(map(str, args.seeds))}")
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got --steps {args.steps}")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got --jobs {args.jobs}")
        if args.batch is not None and args.batch < 1:
            raise ValueError(f"--batch must be >= 1, got --batch {args.batch}")
    if args.cmd == "stratified":
        StrataConfig(top_n=args.top_n, k=args.k)


def _validate_sequences(args) -> None:
    """The --sequences options: files that exist, a usable name, N >= 1; builds args.sequences_cfg."""
    args.sequences_cfg = None
    given = [flag for flag, v in (("--attributes", args.attributes), ("--semantic-ids", args.semantic_ids),
                                  ("--sft-steps", args.sft_steps), ("--name", args.name)) if v is not None]
    if args.sequences is None:
        if given:
            raise ValueError(f"{given[0]} needs --sequences FILE (it describes that dataset)")
        return
    for flag, path in (("--sequences", args.sequences), ("--attributes", args.attributes),
                       ("--semantic-ids", args.semantic_ids)):
        if path is not None and not path.is_file():
            raise ValueError(f"{flag}: no such file: {str(path)!r}")
    if args.sft_steps is not None and args.sft_steps < 1:
        raise ValueError(f"--sft-steps must be >= 1, got --sft-steps {args.sft_steps}")
    try:
        args.sequences_cfg = SequencesConfig(path=str(args.sequences), name=args.name,
                                             attributes=None if args.attributes is None else str(args.attributes),
                                             semantic_ids=None if args.semantic_ids is None else str(args.semantic_ids))
    except ValueError as e:
        raise ValueError(str(e).replace("name must", "--name must").replace("pass a name", "pass --name")) from None


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    try:
        _validate(args)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    if args.profile is None:
        args.profile = "amazon" if getattr(args, "sequences_cfg", None) is not None else "quick"
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.cmd == "reproduce" and args.sequences_cfg is not None:
            cfg = args.sequences_cfg
            return reproduce(dataset_profile(cfg, args.profile, args.sft_steps), args.out)
        if args.cmd == "reproduce":
            return reproduce(args.profile, args.out)
        if args.cmd == "check":
            return check_cmd(args.profile or "quick", args.folder, args.against, args.max_outside, args.answers)
        if args.cmd == "plan":
            return plan_cmd(args.profile, args.write, args.runs, args.cache)
        if args.cmd == "answers":
            return answers_cmd(args.check)
        if args.cmd == "index":
            print(write_index(args.folder or default_figures_dir()))
            return 0
        if args.cmd == "main-results":
            return main_results_cmd(args.profile, args.seeds, args.steps, args.out, args.runs, jobs=args.jobs,
                                    scheduler=args.scheduler, batch=args.batch)
        return stratified_cmd(args.profile, args.out, split=args.split, checkpoint=args.checkpoint,
                              top_n=args.top_n, k=args.k)
    except (ValueError, FileNotFoundError) as e:     # bad input found later: one line, no traceback
        p.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
