"""Benchmark (not a test): where a small-image training job spends its time, CPU or GPU.

Measured in one run, A/B interleaved (``--rounds`` rounds, median per variant, ratios
reported), so load from other processes affects both sides alike:

1. loader alone, images/s: the torchvision CIFAR-10 pipeline (PIL ``RandomCrop(32, 4)``
   + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` per image, in a DataLoader
   with ``--workers`` processes) against the same augmentation as batched tensor ops on
   the device (:mod:`kmexp.data.on_device`), at the same thread budget (workers ==
   intra-op threads). CIFAR-10 files are fakes in the real on-disk format, written to a
   temporary folder.
2. training step alone, images/s: a KM ResNet-32 step (batch 128) on a ready batch.
3. end-to-end: one epoch of the default digits job (KM ResNet-32, batch 32, Lightning)
   with the DataLoader and with ``on_device=true``.
4. Table I (KM Table I: full, BL, KM x 5 seeds + 3 baselines = 30 runs of 200 epochs on
   CIFAR-10) in GPU-hours, from images/s and the stated assumptions, arithmetic printed.

    .venv/bin/python scripts/bench_gpu.py                       # all of it (about 3 min on 2 CPU cores)
    .venv/bin/python scripts/bench_gpu.py --workers 2 --rounds 5 --json out.json

On a machine with a GPU the device is ``cuda`` and the step throughput measured in (2) is
used for (4) instead of the assumed one.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Table I workload (KM Sec. IV-A): 30 runs x 200 epochs x 50k training images, and the 10k
# test images evaluated once per epoch.
TABLE1_RUNS, TABLE1_EPOCHS, CIFAR_TRAIN, CIFAR_TEST = 30, 200, 50_000, 10_000


def write_fake_cifar10(root: Path, n_train: int, n_test: int) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def write(name, n):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(entry))

    for i in range(1, 6):
        write(f"data_batch_{i}", n_train // 5)
    write("test_batch", n_test)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def cifar_datamodule(root: Path, on_device: bool, workers: int, device: torch.device):
    import torchvision.datasets.cifar as tv_cifar

    from kmexp.data.cifar import CIFARDataModule

    tv_cifar.check_integrity = lambda *a, **k: True  # fake files: no MD5 to match
    dm = CIFARDataModule(variant="cifar10", root=str(root), download=False, batch_size=128,
                         num_workers=workers, on_device=on_device, shuffle_seed=0)
    dm.setup()
    dm._training_device = lambda: device
    return dm


def images_per_second(loader, device: torch.device, max_batches: int | None = None) -> float:
    n, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        x = x.to(device, non_blocking=True)
        n += len(x)
        if max_batches and i + 1 >= max_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def interleave(variants: dict, rounds: int) -> dict[str, float]:
    """Median images/s per variant; variants run in alternating order each round."""
    results = {k: [] for k in variants}
    names = list(variants)
    for k in names:  # warm-up: worker start-up, first allocations
        variants[k]()
    for r in range(rounds):
        for k in names if r % 2 == 0 else reversed(names):
            results[k].append(variants[k]())
    return {k: statistics.median(v) for k, v in results.items()}


def bench_loader(args, device) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar10(Path(tmp), args.images, 1000)
        for threads in sorted({1, args.workers}):
            torch.set_num_threads(threads)
            workers = 0 if threads == 1 else threads
            tv = cifar_datamodule(Path(tmp), False, workers, device).train_dataloader()
            dev = cifar_datamodule(Path(tmp), True, 0, device).train_dataloader()
            r = interleave({"torchvision": lambda tv=tv: images_per_second(tv, device),
                            "on_device": lambda dev=dev: images_per_second(dev, device)}, args.rounds)
            label = "1 thread, no workers" if threads == 1 else f"{threads} DataLoader workers vs {threads} threads"
            out[label] = {**r, "ratio": r["on_device"] / r["torchvision"]}
    torch.set_num_threads(args.workers)
    return out


def bench_step(args, device) -> dict:
    from kmexp.methods import build_model

    torch.manual_seed(0)
    net = build_model({"backbone": {"name": "resnet32"}, "num_classes": 10,
                       "method": {"name": "km", "components": ["implicit", "explicit", "classifier"]},
                       "modulator": {}}).to(device).train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32, device=device), torch.randint(0, 10, (128,), device=device)

    def steps(n=args.steps):
        start = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * 128 / (time.perf_counter() - start)

    steps(2)  # warm-up
    return {"km_resnet32_b128": statistics.median(steps() for _ in range(args.rounds))}


def bench_digits_epoch(args, device) -> dict:
    """One epoch of the default digits job (configs/train.yaml) through Lightning, in-process."""
    import hydra
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from kmexp.config import register_resolvers
    from kmexp.lit import build_lightning_module

    register_resolvers()
    configs = Path(__file__).resolve().parents[1] / "kmexp" / "configs"
    accelerator = "gpu" if device.type == "cuda" else "cpu"

    def epoch(on_device: bool) -> float:
        with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"dataset.datamodule.on_device={str(on_device).lower()}"])
        pl.seed_everything(0)
        dm = hydra.utils.instantiate(cfg.dataset.datamodule)
        module = build_lightning_module(cfg)
        trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=1, limit_val_batches=0, logger=False,
                             limit_train_batches=args.epoch_batches or 1.0,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        dm.setup()
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        n = len(dm._datasets[0])
        return (time.perf_counter() - start), min(n, args.epoch_batches * 32) if args.epoch_batches else n

    n = epoch(True)[1]
    times = {"dataloader": [], "on_device": []}
    epoch(False)
    for r in range(args.epoch_rounds):
        for variant in (("dataloader", "on_device") if r % 2 == 0 else ("on_device", "dataloader")):
            times[variant].append(epoch(variant == "on_device")[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"images": n, "seconds": med, "images_per_s": {k: n / v for k, v in med.items()},
            "speedup": med["dataloader"] / med["on_device"]}


def table1_prediction(step_ips: float, loader_ips_per_core: float, args) -> list[str]:
    """Table I GPU-hours from throughputs; every assumption is printed next to its number."""
    train = TABLE1_RUNS * TABLE1_EPOCHS * CIFAR_TRAIN
    test = TABLE1_RUNS * TABLE1_EPOCHS * CIFAR_TEST
    lines = [f"Table I workload: {TABLE1_RUNS} runs x {TABLE1_EPOCHS} epochs x {CIFAR_TRAIN:,} = {train:.2e} training "
             f"images, + {TABLE1_RUNS} x {TABLE1_EPOCHS} x {CIFAR_TEST:,} = {test:.2e} test images "
             f"(evaluation counted at {args.eval_speedup:g}x the training rate: forward only)"]
    work = train + test / args.eval_speedup  # in training-image equivalents
    gpu = step_ips
    loader = loader_ips_per_core * args.loader_workers
    for name, rate in [
        (f"torchvision loader, {args.loader_workers} workers x {loader_ips_per_core:,.0f} img/s per core "
         f"= {loader:,.0f} img/s, GPU step {gpu:,.0f} img/s", min(loader, gpu)),
        (f"on-device data, GPU step {gpu:,.0f} img/s, 1 run per GPU", gpu),
        (f"on-device data, {args.runs_per_gpu} runs per GPU sharing it at {args.packing_efficiency:.0%} "
         f"packing efficiency", gpu * args.runs_per_gpu * args.packing_efficiency),
    ]:
        hours = work / rate / 3600
        lines.append(f"  {name}: {work:.3e} / {rate:,.0f} img/s / 3600 = {hours:.2f} GPU-hours")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000, help="fake CIFAR-10 training images for the loader test")
    p.add_argument("--workers", type=int, default=2, help="thread budget: DataLoader workers vs intra-op threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="training steps per timing of (2)")
    p.add_argument("--epoch-rounds", type=int, default=2, help="rounds of the digits epoch (3)")
    p.add_argument("--epoch-batches", type=int, default=0, help="stop the digits epoch after this many batches (0: all)")
    p.add_argument("--skip-epoch", action="store_true", help="skip the digits epoch (3)")
    p.add_argument("--gpu-step-ips", type=float, default=30_000,
                   help="assumed KM ResNet-32 training images/s on one H100 when no GPU is here (bf16, batch 128)")
    p.add_argument("--eval-speedup", type=float, default=3.0, help="evaluation images/s / training images/s")
    p.add_argument("--loader-workers", type=int, default=4, help="DataLoader workers of the CIFAR configs")
    p.add_argument("--runs-per-gpu", type=int, default=4)
    p.add_argument("--packing-efficiency", type=float, default=0.6,
                   help="assumed throughput of k runs sharing a GPU, as a fraction of k x one run")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.workers)
    print(f"device {device}; torch {torch.__version__}; {platform.machine()}, {os.cpu_count()} cores; "
          f"A/B interleaved, median of {args.rounds} rounds")
    report = {"device": str(device), "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}

    report["loader"] = bench_loader(args, device)
    print("\n1. loader alone (CIFAR-10 train augmentation, batch 128), images/s")
    for label, r in report["loader"].items():
        print(f"  {label}: torchvision {r['torchvision']:,.0f}  on-device {r['on_device']:,.0f}  "
              f"ratio {r['ratio']:.2f}x")

    report["step"] = bench_step(args, device)
    print(f"\n2. training step alone, KM ResNet-32, batch 128: {report['step']['km_resnet32_b128']:,.0f} images/s "
          f"({args.workers} threads)" if device.type == "cpu" else f"on {device}")

    if not args.skip_epoch:
        report["digits_epoch"] = e = bench_digits_epoch(args, device)
        print(f"\n3. digits epoch ({e['images']} training images, KM ResNet-32, batch 32, Lightning): "
              f"DataLoader {e['seconds']['dataloader']:.2f} s, on-device {e['seconds']['on_device']:.2f} s, "
              f"speed-up {e['speedup']:.2f}x")

    one_thread = report["loader"]["1 thread, no workers"]["torchvision"]
    step_ips = report["step"]["km_resnet32_b128"] if device.type == "cuda" else args.gpu_step_ips
    source = "measured here" if device.type == "cuda" else "assumed (--gpu-step-ips), no GPU here"
    print(f"\n4. Table I predicted GPU-hours (GPU step rate {source}; loader rate per core measured here)")
    report["table1"] = table1_prediction(step_ips, one_thread, args)
    print("\n".join(report["table1"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
