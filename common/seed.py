"""Seeding and determinism: the same seed gives the same splits, runs and metrics on the same machine type.

What stays non-deterministic, and why it does not move a metric: wall times (reported only); on CPU, torch's
reductions depend on the number of intra-op threads, so a run pins it (`torch.set_num_threads`, the Makefile's
THREADS) and the same command on the same machine type gives identical values even under load (tested); on a GPU,
cuDNN is set to deterministic algorithms without benchmarking, and torch.use_deterministic_algorithms raises
for an op that has no deterministic implementation (warn_only: it warns and runs the op, so a GPU run may differ
in the last bits there). Python's hash seed cannot be changed from inside a running process: the Makefile exports
PYTHONHASHSEED=0 (nothing in the pipeline iterates over a set or dict of strings whose order would matter).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

# gold_2's training seed = seed + GOLD_2_SEED_OFFSET: far from every other tree's seed, so a tree's gold_2 is never
# another tree's gold (with seed + 1, tree 42's gold_2 was tree 43's gold, and gaps to it telescoped across seeds:
# no independent check of the equivalence test, stage 07)
GOLD_2_SEED_OFFSET = 10_000


def set_seed(seed: int) -> torch.Generator:
    """Seed every RNG the pipeline uses and ask torch for deterministic kernels; return a CPU torch.Generator
    seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism (read at its first use)
    threads = os.environ.get("THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    return torch.Generator().manual_seed(seed)
