"""Fingerprint of this machine's CPU arithmetic: train the tiny profile's SFT policy and ranker on
one torch thread from empty caches and print a sha256 prefix of their weights (about 10 s). Two
machines whose fingerprints differ will not regenerate each other's tables bit for bit.
torch's own kernel dispatch (``ATEN_CPU_CAPABILITY``) and MKL's (``MKL_CBWR``) both depend on
the CPU's instruction set; setting them changes the fingerprint, which is how a run can test
whether pinning them makes two kinds of CPU agree (benchmarks/results/cpu_fingerprint.txt).

    python benchmarks/cpu_fingerprint.py
    ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 python benchmarks/cpu_fingerprint.py
"""
from __future__ import annotations

import hashlib
import os
import platform
import tempfile

from adagrpo_core.configs import get_profile
from adagrpo_core.pipeline import get_ranker, get_sft, get_sids, get_world


def digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    import torch
    p = get_profile("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        world = get_world(p.world, tmp)
        sids = get_sids(world, p.sid, tmp)
        sft = torch.load(get_sft(world, sids, p.policy, p.sft, tmp, progress=False) / "final.pt", weights_only=False)
        ranker = get_ranker(world, p.ranker, tmp, progress=False)
    print(f"machine {platform.machine()}, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, cap env "
          f"{os.environ.get('ATEN_CPU_CAPABILITY')}/{os.environ.get('MKL_CBWR')}")
    print("sft", digest(sft["model"] if "model" in sft else sft["state_dict"]))
    print("ranker", digest(ranker.state_dict()))


if __name__ == "__main__":
    main()
