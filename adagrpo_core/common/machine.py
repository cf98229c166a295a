"""The machine kind: what decides a trained model's floating-point arithmetic on a CPU.

Two machines train bit-identical models only when their CPU vendor and model, the instruction
sets torch dispatches to, torch's version and the thread count agree. :func:`machine_kind` reads
them; :func:`kind_digest` hashes them into 12 hex digits that every run row and table carries, so
a comparison can refuse to pair runs of two kinds (:func:`check_one_kind`); :func:`kind_name` is
the short name a report uses ("AMD EPYC, AVX-512").

    >>> kind = machine_kind(threads=1)
    >>> kind_digest(kind), kind_name(kind)        # ('3f2a...', 'AMD EPYC, AVX-512')
"""
from __future__ import annotations

import functools
import hashlib
import json
import platform
from collections.abc import Iterable

import torch

ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
             "asimd", "sve")
"""The instruction-set flags that torch's and oneDNN's CPU kernels dispatch on (x86 and ARM)."""


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict:
    """(vendor, model name, flags) from /proc/cpuinfo, read once per process; the platform's strings
    where there is none."""
    vendor, model, flags = platform.processor() or platform.machine(), platform.processor() or "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id":
                    vendor = value
                elif key in ("model name", "Model", "CPU part") and not model:
                    model = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"vendor": vendor, "model": model, "flags": flags}


def machine_kind(threads: int | None = None) -> dict:
    """What makes two machines compute alike: CPU vendor and model, the ISA flags of
    :data:`ISA_FLAGS` it has, torch's version and CPU capability, and the torch thread count
    (``threads``: the count runs use, default torch's current one)."""
    info = _cpuinfo()
    return {"cpu_vendor": info["vendor"], "cpu_model": info["model"], "arch": platform.machine(),
            "isa": sorted(f for f in ISA_FLAGS if f in info["flags"]),
            "torch": torch.__version__, "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": int(threads if threads is not None else torch.get_num_threads())}


def kind_digest(kind: dict | None = None) -> str:
    """12 hex digits of sha256 over :func:`machine_kind` (one torch thread, as every run trains)."""
    kind = kind if kind is not None else machine_kind(threads=1)
    return hashlib.sha256(json.dumps(kind, sort_keys=True).encode()).hexdigest()[:12]


def kind_name(kind: dict | None = None) -> str:
    """A short name: the CPU family and its widest vector ISA, e.g. 'AMD EPYC, AVX-512',
    'Intel Xeon, AVX2'."""
    kind = kind if kind is not None else machine_kind(threads=1)
    model = " ".join((kind["cpu_model"] or kind["arch"]).replace("(R)", "").replace("(TM)", "").split())
    family = next((f for f in ("AMD EPYC", "Intel Xeon", "AMD Ryzen", "Intel Core", "Apple") if f in model),
                  model.split("@")[0].strip() or kind["arch"])
    isa = kind["isa"]
    widest = "AVX-512" if "avx512f" in isa else "AVX2" if "avx2" in isa else "SVE" if "sve" in isa else \
        "NEON" if "asimd" in isa else "no vector ISA"
    return f"{family}, {widest}"


def check_one_kind(kinds: Iterable, what: str = "a paired comparison") -> str | None:
    """The one machine-kind digest of ``kinds`` (a column of run rows); ValueError naming both
    kinds when there are two or more, since runs of two kinds train different models from the
    same seed and their difference is not the methods'. None when no row records a kind (tables
    made before kinds were recorded)."""
    seen = sorted({str(k) for k in kinds if isinstance(k, str) and k})
    if len(seen) > 1:
        raise ValueError(f"{what} pairs runs of one machine kind only, got kinds {seen}: regenerate the runs of one "
                         "kind on one machine (kind_digest in adagrpo_core/common/machine.py)")
    return seen[0] if seen else None
