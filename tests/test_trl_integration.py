"""The TRL integration (adagrpo_core.integrations.trl) on a tiny randomly initialised Llama over
semantic-ID tokens, all built here: CPU, offline, nothing downloaded. CI installs the pinned TRL
(requirements.txt), so these tests run there; without TRL they are skipped."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
trl = pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")    # transformers' renamed checkpointing flags

from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from adagrpo_core.integrations.trl import AdaGRPOConfig, AdaGRPOTrainer  # noqa: E402
from adagrpo_core.rl.gate import METHODS, GateConfig, difficulty, discriminability  # noqa: E402
from adagrpo_core.rl.grpo import nll_per_sample  # noqa: E402

LEVELS, K, N_ITEMS, B, G = "abc", 6, 10, 4, 4
CODES = torch.randint(0, K, (N_ITEMS, len(LEVELS)), generator=torch.Generator().manual_seed(3))
SID = ["".join(f"<{lv}_{c}>" for lv, c in zip(LEVELS, row.tolist())) for row in CODES]
ITEM = {s: i for i, s in enumerate(SID)}                 # a catalogue: text -> item id
REWARD = torch.rand(B, N_ITEMS, generator=torch.Generator().manual_seed(4))   # R[user, item]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tokenizer():
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + [f"<{lv}_{c}>" for lv in LEVELS for c in range(K)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"<[^<>]*>"), behavior="isolated")
    tk.decoder = decoders.Fuse()                          # "<a_1><b_2><c_3>" back without spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=3 + len(LEVELS) * K, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def dataset():
    # user u's history: two items; target: a third (users 1 and 3 share their target)
    rows = [(0, [1, 2], 3), (1, [4, 5], 6), (2, [7, 8], 9), (3, [0, 1], 6)]
    return Dataset.from_list([{"prompt": SID[h[0]] + SID[h[1]], "target": SID[t], "user": u} for u, h, t in rows])


def invalid_reward(text):
    """A tuple that is no item: a score in [-1, -0.55], varied so that groups of them have a std."""
    return -1.0 + 0.05 * (sum(map(ord, text)) % 10)


def reward(prompts, completions, user, **kwargs):
    """R[user, item] for a catalogue item, else invalid_reward."""
    return [REWARD[u, ITEM[c]].item() if c in ITEM else invalid_reward(c) for u, c in zip(user, completions)]


def item_ids(texts):
    return [ITEM.get(t, -1) for t in texts]


def args(tmp_path, cls=AdaGRPOConfig, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=B * G, num_generations=G,
                max_completion_length=len(LEVELS), generation_kwargs={"min_new_tokens": len(LEVELS)},
                learning_rate=1e-2, max_steps=1, report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False,
                logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0, loss_type="grpo")
    if cls is AdaGRPOConfig:
        base["num_negatives"] = B - 1
    base.update(kw)
    return cls(**base)


def trainer(tmp_path, model=None, **kw):
    t = AdaGRPOTrainer(model=model or tiny_model(), reward_funcs=reward, args=args(tmp_path, **kw),
                       train_dataset=dataset(), processing_class=tokenizer(), item_ids=item_ids)
    t.current_gradient_accumulation_steps = 1             # what train() sets; the tests call the loss directly
    return t


def batch():
    ds = dataset()
    return [dict(ds[i]) for i in range(B) for _ in range(G)]      # TRL's order: G copies of each prompt


def token_logps(model, prompt_ids, ids):
    """log pi(ids_t | prompt, ids_<t) [n, T] from the model's full logits (no padding here)."""
    x = torch.cat([prompt_ids, ids], 1)
    logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float()
    P = prompt_ids.shape[1]
    return torch.log_softmax(logits[:, P - 1:-1], -1).gather(-1, ids[..., None]).squeeze(-1)


def target_nll(model, tok, inputs):
    """Mean over the B prompts of rl.grpo.nll_per_sample, computed here from scratch."""
    ids = torch.tensor(tok([r["target"] for r in batch()[::G]], add_special_tokens=False)["input_ids"])
    return nll_per_sample(token_logps(model, inputs["prompt_ids"][::G], ids)).mean()


def test_open_gate_loss_is_trl_grpo_loss_plus_nll(tmp_path):
    model = tiny_model()
    ada = trainer(tmp_path / "a", model=model, gate="mix")
    plain = trl.GRPOTrainer(model=copy.deepcopy(model), reward_funcs=reward, args=args(tmp_path / "p", trl.GRPOConfig),
                            train_dataset=dataset(), processing_class=tokenizer())
    plain.current_gradient_accumulation_steps = 1
    torch.manual_seed(1)
    a_in = ada._generate_and_score_completions(batch())
    torch.manual_seed(1)
    p_in = plain._generate_and_score_completions(batch())
    assert torch.equal(a_in["completion_ids"], p_in["completion_ids"])
    assert torch.allclose(a_in["advantages"], p_in["advantages"])          # open gate, lam = 1: TRL's
    assert a_in["advantages"].abs().sum() > 0
    loss = ada.compute_loss(ada.model, a_in)
    expected = plain.compute_loss(plain.model, p_in) + METHODS["mix"].w_nll * target_nll(model, ada.processing_class, a_in)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert ada.last_gate["gate"].all()


def test_closed_gate_gradient_is_the_nll_gradient(tmp_path):
    model = tiny_model()
    ada = trainer(tmp_path, model=model, gate="nll")
    inputs = ada._generate_and_score_completions(batch())
    assert not ada.last_gate["gate"].any() and (inputs["advantages"] == 0).all()
    model.zero_grad()
    ada.compute_loss(model, inputs).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    target_nll(model, ada.processing_class, inputs).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and len(want) > 0
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7, msg=n)


def test_nll_term_over_accumulated_micro_batches_is_the_mean_over_prompts(tmp_path):
    model = tiny_model()
    ada = trainer(tmp_path, model=model, gate="nll", per_device_train_batch_size=B * G // 2,
                  gradient_accumulation_steps=2)                          # two micro-batches per generation
    ada.current_gradient_accumulation_steps = 2
    inputs = ada._generate_and_score_completions(batch())
    perm = torch.randperm(B * G, generator=torch.Generator().manual_seed(0))   # as TRL shuffles the rows
    halves = [{k: v[perm[s::2]] if torch.is_tensor(v) and v.ndim else v for k, v in inputs.items()} for s in (0, 1)]
    total = sum(ada.compute_loss(model, h) for h in halves)
    torch.testing.assert_close(total, target_nll(model, ada.processing_class, inputs), rtol=1e-5, atol=1e-6)


def test_d_and_a_on_a_hand_built_batch_equal_rl_gate(tmp_path):
    ada = trainer(tmp_path, gate="adagrpo", tau=0.5, rho=0.5)
    tok = ada.processing_class
    targets = [r["target"] for r in batch()[::G]]
    bad = next(s for s in (f"<a_{i}><b_{j}><c_0>" for i in range(K) for j in range(K)) if s not in ITEM)
    completions = [SID[3], SID[3], SID[0], bad,          # the target twice, a negative, a hallucination
                   SID[6], SID[6], SID[6], SID[6],       # only the target: no negative, d = a's rollouts = 0
                   SID[0], SID[1], SID[2], SID[0],       # three distinct negatives, one repeated
                   SID[2], SID[5], SID[6], bad]
    ids = tok(completions, add_special_tokens=False)["input_ids"]
    ada._generate_single_turn = lambda *a, **k: (ids, None)
    out = ada._generate_and_score_completions(batch())
    got = ada.last_gate

    # the same quantities from scratch
    model, prompt_ids = ada.model, out["prompt_ids"]
    with torch.no_grad():
        lp_roll = token_logps(model, prompt_ids, torch.tensor(ids)).sum(1).view(B, G)
        t_ids = torch.tensor(tok(targets, add_special_tokens=False)["input_ids"])
        lp_target = token_logps(model, prompt_ids[::G], t_ids).sum(1)
    items = torch.tensor(item_ids(completions)).view(B, G)
    target = torch.tensor(item_ids(targets))
    users = torch.arange(B)
    score_roll = torch.tensor([invalid_reward(c) for c in completions]).view(B, G)
    score_roll = torch.where(items >= 0, REWARD[users[:, None], items.clamp(min=0)], score_roll)
    score_target = REWARD[users, target]
    # in-batch negatives: every other prompt's target that is a different item (M = B - 1 takes them all)
    inbatch = REWARD[users[:, None], target[None, :].expand(B, B)]          # [B, B]
    inmask = target[None, :] != target[:, None]
    d = difficulty(lp_target, lp_roll, items, target)
    a = discriminability(score_target, score_roll, items, target, inbatch, inmask)
    torch.testing.assert_close(got["d"], d)
    torch.testing.assert_close(got["a"], a)
    assert got["d"][1] == 0 and torch.equal(got["items"], items) and torch.equal(got["target"], target)
    g = (d >= 0.5) & (a >= 0.5)
    assert torch.equal(got["gate"], g)
    adv = out["advantages"].view(B, G)
    assert (adv[~g] == 0).all() and (adv[g] != 0).any()
    assert list(ada._logs["advantages"]) == out["advantages"].tolist()     # the completions table: gated


def test_five_steps_change_the_parameters_and_log_the_gate(tmp_path):
    ada = trainer(tmp_path, gate="adagrpo", tau=0.0, rho=0.5, max_steps=5)
    before = [p.detach().clone() for p in ada.model.parameters()]
    ada.train()
    assert any(not torch.equal(b, p) for b, p in zip(before, ada.model.parameters()))
    logs = [h for h in ada.state.log_history if "loss" in h]
    assert len(logs) == 5
    for h in logs:
        for key in ("gate/admission_rate", "gate/difficulty_mean", "gate/discriminability_mean", "nll"):
            assert key in h and h[key] is not None and h[key] == h[key], (key, h)
        assert 0 <= h["gate/admission_rate"] <= 1


@pytest.mark.parametrize("kw, match", [
    ({"beta": 0.04}, "beta=0.04"),
    ({"loss_type": "dapo"}, "loss_type='dapo'.*token count"),
    ({"loss_type": "bnpo"}, "loss_type='bnpo'.*token count"),
    ({"loss_type": "sapo"}, "loss_type='sapo'"),
    ({"use_liger_kernel": True}, "use_liger_kernel=True"),
    ({"mask_truncated_completions": True}, "mask_truncated_completions=True"),
    ({"entropy_coef": 0.01}, "entropy_coef=0.01"),
    ({"gate": "oracle"}, "gate='oracle'"),
    ({"gate": "random"}, "random_rate=None"),
    ({"tau": 1.5}, "tau=1.5"),
    ({"num_negatives": -1}, "num_negatives=-1"),
    ({"lam": -1.0}, "lam=-1.0"),
])
def test_bad_combinations_are_rejected(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        args(tmp_path, **kw)


def test_trainer_rejects_a_plain_config_and_a_dataset_without_target(tmp_path):
    with pytest.raises(TypeError, match="AdaGRPOConfig"):
        AdaGRPOTrainer(model=tiny_model(), reward_funcs=reward, args=args(tmp_path, trl.GRPOConfig),
                       train_dataset=dataset(), processing_class=tokenizer())
    with pytest.raises(ValueError, match="'target' column"):
        AdaGRPOTrainer(model=tiny_model(), reward_funcs=reward, args=args(tmp_path),
                       train_dataset=dataset().remove_columns("target"), processing_class=tokenizer())


def test_config_defaults_come_from_the_package(tmp_path):
    assert AdaGRPOConfig.loss_type == "grpo"
    assert (AdaGRPOConfig.tau, AdaGRPOConfig.rho, AdaGRPOConfig.num_negatives) == \
        (GateConfig.tau, GateConfig.rho, GateConfig.num_negatives)
    assert AdaGRPOConfig.__dataclass_fields__["tau"].metadata["help"]
    for gate in ("adagrpo", "grpo", "nll"):
        assert args(tmp_path, gate=gate).nll_weight == METHODS[gate].w_nll


def test_the_package_imports_without_trl():
    code = ("import sys; import adagrpo_core, adagrpo_core.integrations, adagrpo_core.rl.gate; "
            "assert 'trl' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
