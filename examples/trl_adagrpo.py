"""AdaGRPO through Hugging Face TRL on the simulated quick world, with a tiny language model.

Every item of the world is its semantic ID written as text, one token per level: item 17 with
codes (3, 30, 5, 0) is ``<a_3><b_30><c_5><d_0>``. A prompt is a user's last 10 clicked items (an
empty slot is ``<none>`` x 4, so every prompt has 40 tokens); the completion is the next item.

1. a tiny Llama (2 layers, width 64), randomly initialised, learns the next item with TRL's
   SFTTrainer (prompt-completion data: the loss is on the completion);
2. AdaGRPOTrainer continues from it, with the project's ranker (the click model trained on the
   world's exposure-biased impressions) wrapped as a TRL reward function, and the gate
   admitting the prompts where the policy is unsure and the ranker separates the target;
3. test HR@10 (unconstrained beam search, width 20, all test users) after each stage, with the
   hallucination rate (the share of the top 10 that is no item). ``--control nll`` also runs the
   same RL stage from the same SFT model with another gate (nll: continued SFT), to tell the
   gate's effect from that of training on.

The world, its semantic IDs and the ranker come from the package's cache (``ADAGRPO_CACHE``,
default the checkout's ``.cache/``), built on first use. Run from the repository root after the
README's set-up::

    .venv/bin/python examples/trl_adagrpo.py            # --help for the knobs
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")             # nothing is downloaded
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.eval.evaluate import test_examples  # noqa: E402
from adagrpo_core.eval.metrics import hallucination_rate, hr_at_k  # noqa: E402
from adagrpo_core.integrations.trl import AdaGRPOConfig, AdaGRPOTrainer  # noqa: E402
from adagrpo_core.pipeline import get_ranker, get_sids, get_world  # noqa: E402
from adagrpo_core.reward.reward_model import RewardModel  # noqa: E402
from adagrpo_core.common.runtime import seed_everything  # noqa: E402

SPECIALS = ["<pad>", "<eos>", "<unk>", "<none>"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sft-steps", type=int, default=600, help="SFT optimiser steps (batch 128)")
    p.add_argument("--rl-steps", type=int, default=50, help="AdaGRPO optimiser steps")
    p.add_argument("--rl-prompts", type=int, default=64, help="prompts per AdaGRPO step (each gets G completions)")
    p.add_argument("--gate", default="adagrpo", help="AdaGRPOConfig.gate (e.g. adagrpo, mix, nll, random)")
    p.add_argument("--control", default="", help="also run RL from the same SFT model with this gate (e.g. nll)")
    p.add_argument("--rl-lr", type=float, default=3e-4, help="RL learning rate (constant; the package's RL lr)")
    p.add_argument("--test-samples", type=int, default=0, help="test users evaluated (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seeds random, numpy, torch and both trainers")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1, as the package trains)")
    return p.parse_args()


def sid_text(codes: np.ndarray) -> str:
    """An item's codes -> its text, one token per level: <a_3><b_30><c_5><d_0>."""
    return "".join(f"<{chr(97 + level)}_{int(c)}>" for level, c in enumerate(codes))


def build_tokenizer(n_levels: int, n_codes: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose words are the semantic-ID tokens (no pre-trained vocabulary)."""
    words = SPECIALS + [f"<{chr(97 + level)}_{c}>" for level in range(n_levels) for c in range(n_codes)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"<[^<>]*>"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def prompts_of(history: np.ndarray, item_text: list[str], n_levels: int) -> list[str]:
    """History rows [n, H] (-1 = empty slot) -> prompt texts of H * n_levels tokens each."""
    empty = "<none>" * n_levels
    return ["".join(item_text[i] if i >= 0 else empty for i in row) for row in history]


@torch.no_grad()
def test_hr10(model, tok, examples, item_text, sid_to_item, n_levels, batch_size=128):
    """HR@10 and hallucination rate of the top 10 of 20 beams (unconstrained, as the paper reports)."""
    model.eval()
    ranked = []
    prompts = prompts_of(examples.history, item_text, n_levels)
    for s in range(0, len(prompts), batch_size):
        enc = tok(prompts[s:s + batch_size], return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, num_beams=20, num_return_sequences=20, do_sample=False,
                             max_new_tokens=n_levels, min_new_tokens=n_levels, pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        ranked.append(np.array([sid_to_item.get(t, -1) for t in texts]).reshape(-1, 20)[:, :10])
    model.train()
    ranked = np.concatenate(ranked)
    return hr_at_k(ranked, examples.target, 10), hallucination_rate(ranked, 10)


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(a.seed)
    t0 = time.time()
    profile = get_profile("quick")
    world = get_world(profile.world)
    sids = get_sids(world, profile.sid)
    ranker = get_ranker(world, profile.ranker, progress=False)
    t_cache = time.time() - t0
    L, H = sids.length, profile.policy.max_history
    item_text = [sid_text(c) for c in sids.codes]
    sid_to_item = {t: i for i, t in enumerate(item_text)}
    tok = build_tokenizer(L, sids.vocab_size)
    train = world.examples("train", H)
    test = test_examples(world, H, a.test_samples, a.seed)
    print(f"quick world: {world.n_items} items, {L} tokens per ID, {len(train)} train / {len(test)} test samples; "
          f"world, IDs and ranker ready in {t_cache:.0f} s")

    llama = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=H * L + L + 2,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                        tie_word_embeddings=False)
    torch.manual_seed(a.seed)
    model = LlamaForCausalLM(llama)
    common = dict(report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no",
                  disable_tqdm=True, seed=a.seed, logging_steps=10)
    out_dir = tempfile.mkdtemp(prefix="trl_adagrpo_")

    # 1. SFT: TRL's SFTTrainer on (history, next item) pairs
    t = time.time()
    sft_data = Dataset.from_dict({"prompt": prompts_of(train.history, item_text, L),
                                  "completion": [item_text[i] for i in train.target]})
    sft = SFTTrainer(model=model, processing_class=tok, train_dataset=sft_data, args=SFTConfig(
        output_dir=os.path.join(out_dir, "sft"), max_steps=a.sft_steps, per_device_train_batch_size=128,
        learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=min(100, a.sft_steps // 10),
        weight_decay=0.01, max_length=H * L + L + 1, **common))
    sft.train()
    t_sft = time.time() - t
    t = time.time()
    hr_sft, hal_sft = test_hr10(model, tok, test, item_text, sid_to_item, L)
    t_eval = time.time() - t
    print(f"after SFT ({a.sft_steps} steps, {t_sft:.0f} s): test HR@10 = {hr_sft:.4f}, "
          f"hallucination = {hal_sft:.4f} (evaluated in {t_eval:.0f} s)")

    # 2. AdaGRPO: the ranker as a TRL reward function; the gate from adagrpo_core.rl.gate
    reward_model = RewardModel(ranker, sids, profile.reward)    # click probability; no item: -1

    def ranker_reward(prompts, completions, history, **kwargs):
        items = torch.tensor([[sid_to_item.get(c, -1)] for c in completions])
        return reward_model.score_items(torch.tensor(history), items)[:, 0].tolist()

    order = np.random.default_rng(a.seed).permutation(len(train))[:a.rl_steps * a.rl_prompts]
    rl_data = Dataset.from_dict({"prompt": prompts_of(train.history[order], item_text, L),
                                 "target": [item_text[i] for i in train.target[order]],
                                 "history": train.history[order].tolist()})
    G = profile.grpo.num_generations
    sft_model = None
    if a.control:       # a fresh copy: TRL patches a model's forward in place, so a deepcopy would share it
        sft_model = LlamaForCausalLM(llama)
        sft_model.load_state_dict(model.state_dict())
    for gate, policy in [(a.gate, model)] + ([(a.control, sft_model)] if a.control else []):
        t = time.time()
        rl = AdaGRPOTrainer(
            model=policy, reward_funcs=ranker_reward, train_dataset=rl_data, processing_class=tok,
            item_ids=lambda texts: [sid_to_item.get(x, -1) for x in texts],
            args=AdaGRPOConfig(output_dir=os.path.join(out_dir, gate), gate=gate, num_generations=G,
                               per_device_train_batch_size=a.rl_prompts * G, max_steps=a.rl_steps,
                               max_completion_length=L, generation_kwargs={"min_new_tokens": L},
                               learning_rate=a.rl_lr, lr_scheduler_type="constant", **common))
        rl.train()
        t_rl = time.time() - t
        rate = np.mean([h["gate/admission_rate"] for h in rl.state.log_history if "gate/admission_rate" in h])
        hr_rl, hal_rl = test_hr10(policy, tok, test, item_text, sid_to_item, L)
        print(f"after RL with gate={gate} ({a.rl_steps} steps of {a.rl_prompts} prompts x {G} completions, "
              f"{t_rl:.0f} s; mean admission rate {rate:.3f}): test HR@10 = {hr_rl:.4f}, "
              f"hallucination = {hal_rl:.4f}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
