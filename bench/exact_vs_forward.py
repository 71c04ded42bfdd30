"""Time exact indices against the bare batched forward pass over the same coalition rows.

Builds a DeepFM with 10 categorical fields (embedding 10, DNN 400-400-400, random
weights: the cost does not depend on the weights), explains ``--rows`` samples
with ``exact_indices`` (Shapley, Banzhaf, SII, STII and FSII from one
evaluation of all 1,024 coalitions), and times ``logit_from_embeddings`` alone
on the same number of rows (rows x 2**10) in chunks of the same size. That
forward pass is the bound for any method that evaluates every coalition.

Usage: python bench/exact_vs_forward.py [--rows 1000] [--chunk-size 32768] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from workbench.explain.exact import exact_indices
from workbench.schema import Field, Schema, Vocabulary
from workbench.zoo import build_model

N_FIELDS = 10


def build_inputs(n_rows: int, seed: int) -> tuple[Schema, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    fields = [Field(f"f{i}", "categorical", vocabulary=Vocabulary([str(v) for v in range(50)])) for i in range(N_FIELDS)]
    schema = Schema(fields, label="label")
    inputs = {f.name: torch.from_numpy(rng.integers(1, 51, size=n_rows)) for f in fields}
    return schema, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="samples to explain (default: 1000)")
    parser.add_argument("--chunk-size", type=int, default=32768, help="rows per forward pass (default: 32768)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each measurement (default: 3)")
    args = parser.parse_args()

    torch.manual_seed(0)
    schema, inputs = build_inputs(args.rows, seed=0)
    model = build_model("deepfm", schema, embedding_dim=10, hidden_units=[400, 400, 400]).eval()
    n_rows = args.rows * 2**N_FIELDS

    with torch.no_grad():
        embeddings = model.field_embedding(inputs)
    mixed = embeddings.repeat_interleave(2**N_FIELDS, dim=0)  # same row count as the game

    exact_times, forward_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = exact_indices(model, inputs, baseline="zero", chunk_size=args.chunk_size)
        exact_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        with torch.no_grad():
            for begin in range(0, n_rows, args.chunk_size):
                model.logit_from_embeddings(mixed[begin : begin + args.chunk_size])
        forward_times.append(time.perf_counter() - start)

    gap = float(np.abs(result.shapley.completeness_gap).max())
    exact_s, forward_s = min(exact_times), min(forward_times)
    print(f"rows explained: {args.rows}, coalition rows: {n_rows:,}, threads: {torch.get_num_threads()}")
    print(f"exact_indices (5 indices), best of {args.repeats}: {exact_s:.2f} s")
    print(f"bare forward over the same rows, best of {args.repeats}: {forward_s:.2f} s")
    print(f"ratio: {exact_s / forward_s:.3f}")
    print(f"max Shapley completeness gap: {gap:.2e}")


if __name__ == "__main__":
    main()
