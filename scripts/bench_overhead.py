"""Per-step framework overhead: kmexp's training step vs a bare PyTorch loop (issue: speed).

Both train the same network on the same data loader with the same optimizer, one step at a
time, from the default job's composed config (KM, ResNet-32, bundled digits, batch 32 unless
overridden):

- ``kmexp``: the LightningModule, Trainer, loggers and callbacks the entry point builds
  (``python -m kmexp.train``; W&B disabled, CSV logger on, the configured progress bar);
- ``bare``: ``for x, y in loader: loss = F.cross_entropy(net(x), y); loss.backward();
  opt.step(); opt.zero_grad()``.

A step is the time from one batch's start to the next (data loading included), in CPU time
of the process by default (``--clock cpu``: on a machine shared with other jobs, waiting
for a core is not counted) or wall-clock time (``--clock wall``). The two alternate in segments of ``--steps`` steps over ``--rounds`` rounds, so a change of machine
load hits both alike; the first ``--skip`` steps of every segment are dropped; the median
per-step ratio over rounds is reported.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_overhead.py --rounds 5 --steps 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from kmexp.config import register_resolvers

    register_resolvers()
    with initialize_config_module("kmexp.configs", version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=False)


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = CLOCKS["cpu"]


class StepTimes:
    """Time between consecutive training-batch starts (:data:`CLOCK`)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def mark(self) -> None:
        self.starts.append(CLOCK())

    def steps(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)][skip:]


def kmexp_segment(cfg, module, datamodule, steps: int, run_dir: Path) -> StepTimes:
    import hydra
    import pytorch_lightning as pl

    from kmexp.lit.callbacks import build_callbacks, build_loggers

    times = StepTimes()

    class Timer(pl.Callback):
        def on_train_batch_start(self, *args) -> None:
            times.mark()

        def on_train_end(self, *args) -> None:
            times.mark()

    trainer = hydra.utils.instantiate(
        cfg.trainer, default_root_dir=str(run_dir), logger=build_loggers(cfg, run_dir) or False,
        callbacks=[*build_callbacks(cfg, run_dir / "checkpoints"), Timer()],
        enable_progress_bar=cfg.callbacks.progress_bar != "none",
        max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    return times


def bare_segment(net, optimizer, loader, steps: int) -> StepTimes:
    times = StepTimes()
    net.train()
    batches = iter(loader)
    for _ in range(steps):
        times.mark()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    times.mark()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12, help="steps per segment")
    parser.add_argument("--skip", type=int, default=2, help="steps dropped at the start of each segment")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--modulators-every-forward", action="store_true",
                        help="kmexp side: run the modulators in every forward (no kmexp.modulated_weights)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the default job")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    warnings.filterwarnings("ignore")

    import hydra

    from kmexp.lit import build_lightning_module
    from kmexp.optim import build_optimizer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([f"paths.log_dir={tmp}", f"paths.run_dir={tmp}", "logger=csv", "callbacks.progress_bar=none", *args.overrides])
        torch.manual_seed(cfg.seed)
        datamodule = hydra.utils.instantiate(cfg.dataset.datamodule)
        module = build_lightning_module(cfg)
        if args.modulators_every_forward:
            module.reuses_parametrized_weights = False
        # the bare loop: same network, optimizer groups and loader, no framework
        torch.manual_seed(cfg.seed)
        bare_module = build_lightning_module(cfg)
        net = bare_module.net
        optimizer = build_optimizer(bare_module.optimizer_groups(), bare_module.hparams.optim)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()

        ratios, per_step = [], {"kmexp": [], "bare": []}
        for r in range(args.rounds):
            k = statistics.median(kmexp_segment(cfg, module, datamodule, args.steps, Path(tmp) / f"r{r}").steps(args.skip))
            b = statistics.median(bare_segment(net, optimizer, loader, args.steps).steps(args.skip))
            per_step["kmexp"].append(k)
            per_step["bare"].append(b)
            ratios.append(k / b)
            print(f"round {r}: kmexp {k * 1e3:.1f} ms/step, bare {b * 1e3:.1f} ms/step, ratio {k / b:.3f}", flush=True)
    print(f"median per step: kmexp {statistics.median(per_step['kmexp']) * 1e3:.1f} ms, "
          f"bare {statistics.median(per_step['bare']) * 1e3:.1f} ms; "
          f"kmexp / bare = {statistics.median(ratios):.3f} ({args.clock} time, median of {args.rounds} paired rounds, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
