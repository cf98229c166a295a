"""Every config of the package in one place, and the named profiles (one object each).

The configs of the training stages live here: :class:`LoopConfig` holds what SFT and RL share
(the one training loop reads it), :class:`SFTConfig` and :class:`RLConfig` add their own fields.
The configs of a component stay next to the component so that a file can be copied on its own
(``GateConfig`` in ``rl/gate.py``, ``GRPOConfig`` in ``rl/grpo.py``, ``WorldConfig`` in
``data/world.py`` ...) and are re-exported here. :class:`Profile` holds one of each, and
:func:`get_profile` returns the named ones: ``quick`` (the default, CPU), ``full``, ``tiny``
(tests and smoke runs) and ``amazon`` (Amazon Beauty).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .data.amazon import AmazonConfig
from .data.sequences import SequencesConfig
from .data.world import WorldConfig
from .eval.strata import StrataConfig
from .model.policy import PolicyConfig
from .model.sasrec import SASRecConfig
from .model.semantic_ids import SIDConfig
from .reward.ranker import RankerConfig
from .reward.reward_model import RewardConfig
from .rl.gate import GateConfig
from .rl.grpo import GRPOConfig
from .utils import check_device, check_int, check_range

__all__ = ["AmazonConfig", "GateConfig", "GRPOConfig", "LoopConfig", "PolicyConfig", "Profile", "PROFILES",
           "RankerConfig", "RewardConfig", "RLConfig", "SequencesConfig", "SFTConfig", "SIDConfig", "StrataConfig",
           "WorldConfig", "get_profile"]


@dataclass
class LoopConfig:
    """What every training stage shares: optimisation, checkpoint cadence and validation."""

    steps: int = 200
    """Optimiser steps in total."""
    batch_size: int = 64
    """Samples per step."""
    lr: float = 3e-4
    """AdamW (peak) learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    ckpt_every: int = 50
    """Checkpoint + validation HR@10 every this many steps (and at the last step)."""
    eval_samples: int = 1000
    """Validation examples used at checkpoints (a fixed subsample; 0 = all)."""
    eval_beam_width: int = 20
    """Beam width of the validation (and test) beam search."""
    seed: int = 0
    """Seeds random, numpy and torch, the data order (and the RL rollout sampler)."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""

    min_batch_size = 1       # class constants, not fields: what each stage needs at least
    min_beam_width = 10

    def __post_init__(self):
        check_int("steps", self.steps, lo=1)
        check_int("batch_size", self.batch_size, lo=self.min_batch_size)
        check_range("lr", self.lr, lo=0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0)
        check_range("grad_clip", self.grad_clip, lo=0)
        check_int("ckpt_every", self.ckpt_every, lo=1)
        check_int("eval_samples", self.eval_samples, lo=0)
        check_int("eval_beam_width", self.eval_beam_width, lo=self.min_beam_width)
        check_int("seed", self.seed, lo=0)
        check_device("device", self.device)


@dataclass
class SFTConfig(LoopConfig):
    """Supervised fine-tuning: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr."""

    steps: int = 600
    """Optimiser steps in total."""
    batch_size: int = 128
    """Windows per step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    ckpt_every: int = 100
    """Checkpoint + validation every this many steps."""
    warmup_steps: int = 100
    """Linear warm-up steps (at most ``steps``)."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor, as a fraction of lr."""

    def __post_init__(self):
        super().__post_init__()
        check_int("warmup_steps", self.warmup_steps, lo=0, hi=self.steps)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)


@dataclass
class RLConfig(LoopConfig):
    """RL fine-tuning from the SFT checkpoint (one update per batch, TRL's num_iterations=1)."""

    batch_size: int = 64
    """B: training contexts per step (each gets num_generations rollouts); >= 2 for in-batch negatives."""
    test_samples: int = 0
    """Test examples a run is evaluated on (0 = all), drawn with the run's seed."""

    min_batch_size = 2
    min_beam_width = 20      # test evaluation reports HR@20

    def __post_init__(self):
        super().__post_init__()
        check_int("test_samples", self.test_samples, lo=0)


# ----------------------------------------------------------------------------------------------
# profiles


@dataclass
class Profile:
    """Every config of one experiment: data, IDs, policy, SFT, ranker, reward, GRPO, gate and RL."""

    name: str = "quick"
    """The profile's name (tables carry it)."""
    world: WorldConfig | AmazonConfig | SequencesConfig = field(default_factory=WorldConfig.quick)
    """The simulated world, or a real dataset (AmazonConfig, or SequencesConfig for any file)."""
    sid: SIDConfig = field(default_factory=SIDConfig)
    """Residual k-means semantic IDs (unused when a dataset brings its own)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The generative policy's size."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Supervised fine-tuning of the policy."""
    ranker: RankerConfig = field(default_factory=RankerConfig)
    """The click model trained on impressions."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """What the reward serves (RL and the stratified analysis)."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """GRPO knobs and loss weights."""
    gate: GateConfig = field(default_factory=GateConfig)
    """The gate (method, tau, rho, M ...)."""
    rl: RLConfig = field(default_factory=RLConfig)
    """RL optimisation, checkpoints and evaluation."""
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    """The SASRec reference model (real datasets: a baseline row, and the reward of source='sasrec')."""

    @property
    def is_simulated(self) -> bool:
        """True on the simulated world (true utility known)."""
        return isinstance(self.world, WorldConfig)

    def with_rl_steps(self, steps: int) -> "Profile":
        """A copy with ``steps`` RL steps (0 keeps the profile's); checkpoints no sparser than that."""
        if not steps:
            return self
        check_int("steps", steps, lo=1)
        return replace(self, rl=replace(self.rl, steps=steps, ckpt_every=min(self.rl.ckpt_every, steps)))

    def with_sft_steps(self, steps: int) -> "Profile":
        """A copy with ``steps`` SFT steps (0 keeps the profile's): checkpoints no sparser than that,
        and the warm-up at most the profile's and at most a tenth of the steps."""
        if not steps:
            return self
        check_int("steps", steps, lo=1)
        warmup = min(self.sft.warmup_steps, steps // 10)
        return replace(self, sft=replace(self.sft, steps=steps, ckpt_every=min(self.sft.ckpt_every, steps),
                                         warmup_steps=warmup))

    def configs(self) -> dict:
        """{field name: config} for every config of the profile (for hashing and config.json)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


PROFILES = ("quick", "paper", "full", "tiny", "amazon")


def get_profile(name: str) -> Profile:
    """The named profile.

    * 'quick' (the default of reproduce.sh, CPU): the calibrated world; short RL runs (50 steps)
      evaluated on every test user; the notebooks use reduced grids and lists, so the whole suite
      runs in 15 minutes on 2 cores;
    * 'paper': the same world, SFT base and ranker (one cache), RL runs of 200 steps and the full
      grids: the numbers of RESULTS.md;
    * 'full': a larger world and policy (GPU when present);
    * 'tiny': tests and smoke runs (a small saturated world);
    * 'amazon': Amazon Beauty with collaborative RQ-KMeans semantic IDs (see below).
    """
    if name == "quick":
        return Profile(name="quick", rl=RLConfig(steps=50, ckpt_every=25, eval_samples=500))
    if name == "paper":
        return Profile(name="paper", rl=RLConfig(steps=200, ckpt_every=50, eval_samples=1000))
    if name == "full":
        return Profile(name="full", world=WorldConfig.full(), sid=SIDConfig(num_levels=3, codebook_size=64),
                       policy=PolicyConfig(n_layer=4, n_embd=128, max_history=20),
                       sft=SFTConfig(steps=4000, batch_size=256, ckpt_every=500),
                       rl=RLConfig(steps=1000, batch_size=128, ckpt_every=100))
    if name == "tiny":
        return Profile(name="tiny", world=WorldConfig.tiny(), sid=SIDConfig(num_levels=2, codebook_size=8),
                       policy=PolicyConfig(n_embd=32, max_history=5),
                       sft=SFTConfig(steps=30, ckpt_every=10, eval_samples=50, warmup_steps=10),
                       ranker=RankerConfig(max_epochs=2), grpo=GRPOConfig(num_generations=4),
                       rl=RLConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=50, test_samples=100))
    if name == "amazon":
        # Amazon Beauty; the files come from $ADAGRPO_AMAZON_DIR or a verified download. The ranker
        # learns from semi-synthetic exposure (see data/amazon.py). The IDs are RQ-KMeans codes of
        # co-occurrence embeddings plus attributes, in LETTER's shape (4 levels of 256 codes): with
        # the same SFT they beat LETTER's published IDs on validation (figures/amazon/
        # semantic_ids_beauty.md). SFT has 1500 steps, what one CPU thread trains in about 8 minutes;
        # RL 50 steps, as the quick profile, and every method is tested on all 22,363 test users.
        return Profile(name="amazon", world=AmazonConfig(semantic_ids="collaborative"),
                       sid=SIDConfig(num_levels=4, codebook_size=256),
                       policy=PolicyConfig(n_embd=64, max_history=20),
                       sft=SFTConfig(steps=1500, batch_size=128, ckpt_every=500, eval_samples=2000),
                       rl=RLConfig(steps=50, batch_size=64, ckpt_every=25, eval_samples=2000, test_samples=0))
    raise ValueError(f"profile must be one of {list(PROFILES)}, got profile={name!r}")


# ----------------------------------------------------------------------------------------------
# notebook parameters


def check_notebook_params(*, allowed_profiles=PROFILES, **params) -> None:
    """Validate a notebook's papermill parameters before any expensive work.

    Checks the parameters the notebooks share, where given: ``profile`` (one of
    ``allowed_profiles``), ``seeds`` (a non-empty list of distinct non-negative ints; None: the
    profile's), ``steps`` and ``threads`` (ints >= 0; 0 keeps the default), ``hr_k`` (5, 10 or 20), ``lams``
    (non-negative numbers), ``oracle_thresholds`` (numbers in [0, 1]; None: the profile's),
    ``noise_levels`` and ``mix_lams`` (non-negative numbers; None: the profile's), ``jobs`` (int
    >= 0), ``sequences`` (an existing file or None), ``run_dir`` (an existing
    folder or None), ``out_dir`` / ``cache_dir`` / ``runs_dir`` (a path or None), ``checkpoint``
    ('best' or 'final') and ``split`` ('test' or 'valid'). Other parameters are left to the code
    that uses them. A bad value raises ValueError naming the parameter and the value.
    """
    import math
    import os
    from pathlib import Path

    import numpy as np

    def bad(name, why):
        raise ValueError(f"notebook parameter {name} {why}, got {name}={params[name]!r}")

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    def is_number(v):
        return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                and math.isfinite(float(v)))

    def number_list(name, lo, hi=None):
        v = params[name]
        if not isinstance(v, (list, tuple)) or not v:
            bad(name, "must be a non-empty list of numbers")
        where = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        if not all(is_number(x) and lo <= x and (hi is None or x <= hi) for x in v):
            bad(name, f"must hold finite numbers {where}")

    if "profile" in params and params["profile"] not in allowed_profiles:
        bad("profile", f"must be one of {list(allowed_profiles)}")
    if params.get("seeds") is not None:       # None: the profile's default (notebook 03)
        v = params["seeds"]
        if not isinstance(v, (list, tuple)) or not v:
            bad("seeds", "must be a non-empty list of ints")
        if not all(is_int(s) and s >= 0 for s in v):
            bad("seeds", "must hold non-negative ints")
        if len(set(int(s) for s in v)) != len(v):
            bad("seeds", "must be distinct (a repeated seed fakes precision)")
    for name in ("steps", "threads"):
        if name in params and not (is_int(params[name]) and params[name] >= 0):
            bad(name, "must be an int >= 0 (0 keeps the default)")
    if "hr_k" in params and not (is_int(params["hr_k"]) and params["hr_k"] in (5, 10, 20)):
        bad("hr_k", "must be 5, 10 or 20")
    if params.get("lams") is not None:
        number_list("lams", 0)
    if params.get("oracle_thresholds") is not None:     # None: the profile's list
        number_list("oracle_thresholds", 0, 1)
    if params.get("noise_levels") is not None:
        number_list("noise_levels", 0)
    if params.get("mix_lams") is not None:
        number_list("mix_lams", 0)
    if params.get("sequences") is not None and not (isinstance(params["sequences"], (str, os.PathLike))
                                                     and Path(params["sequences"]).is_file()):
        bad("sequences", "must be the path of an existing user item item ... file (or None)")
    if "jobs" in params and not (is_int(params["jobs"]) and params["jobs"] >= 0):
        bad("jobs", "must be an int >= 0 (0 means one per CPU core)")
    for name in ("run_dir", "out_dir", "cache_dir", "runs_dir"):
        if name in params and params[name] is not None and not isinstance(params[name], (str, os.PathLike)):
            bad(name, "must be a path or None")
    if params.get("run_dir") is not None and (not str(params["run_dir"]).strip()
                                              or not Path(params["run_dir"]).is_dir()):
        bad("run_dir", "must be an existing folder (or None for the SFT base)")
    if "checkpoint" in params and params["checkpoint"] not in ("best", "final"):
        bad("checkpoint", "must be 'best' or 'final'")
    if "split" in params and params["split"] not in ("test", "valid"):
        bad("split", "must be 'test' or 'valid'")
