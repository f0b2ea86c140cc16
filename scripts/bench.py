"""Benchmark (``make bench``): the cost of kernel modulation, measured in one run.

1. KM training step / full training step, ResNet-32, batch 128, 32x32 (target <= 1.05:
   the modulators add O(N k^2) work to the O(N H W batch) of the convolutions).
2. Folded-KM inference / plain inference (target <= 1.01: folding leaves a plain net).

Steps of the two variants are interleaved and the median ratio over rounds is reported,
so drift in machine load affects both alike. Results go to stdout (and --json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from kmexp.methods import build_model
from kmexp.modulation import fold_modulators

METHODS = {
    "full": {"name": "full", "components": ["convolution", "implicit", "classifier"]},
    "km": {"name": "km", "components": ["implicit", "explicit", "classifier"]},
}


def make(method: str, backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"backbone": {"name": backbone}, "num_classes": 10, "method": METHODS[method], "modulator": {}})


def train_step_fn(model, x, y):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def infer_fn(model, x):
    model.eval()

    @torch.no_grad()
    def step():
        model(x)

    return step


def interleaved(a, b, rounds: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for i in range(rounds):
        for fn, acc in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return ta, tb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args()

    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    full, km = make("full", args.backbone), make("km", args.backbone)
    t_full, t_km = interleaved(train_step_fn(full, x, y), train_step_fn(km, x, y), args.rounds)

    plain = make("full", args.backbone)
    folded = fold_modulators(make("km", args.backbone))
    t_plain, t_folded = interleaved(infer_fn(plain, x), infer_fn(folded, x), args.rounds * 2)

    med = statistics.median
    result = {
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "train_step_full_s": med(t_full),
        "train_step_km_s": med(t_km),
        "train_step_ratio_km_over_full": med(t_km) / med(t_full),
        "infer_plain_s": med(t_plain),
        "infer_folded_km_s": med(t_folded),
        "infer_ratio_folded_over_plain": med(t_folded) / med(t_plain),
    }
    print(f"{args.backbone}, batch {args.batch_size}, {args.rounds} interleaved rounds, {result['hardware']}")
    print(f"  train step: full {med(t_full) * 1e3:.1f} ms, KM {med(t_km) * 1e3:.1f} ms "
          f"-> KM / full = {result['train_step_ratio_km_over_full']:.3f} (target <= 1.05)")
    print(f"  inference:  plain {med(t_plain) * 1e3:.1f} ms, folded KM {med(t_folded) * 1e3:.1f} ms "
          f"-> folded / plain = {result['infer_ratio_folded_over_plain']:.3f} (target <= 1.01)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
