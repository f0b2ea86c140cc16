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
4. 1 vs k runs per device: k training processes at once (the way ``kmexp.reproduce
   --runs-per-gpu k`` packs a sweep, :mod:`kmexp.reporting.packing`), each the step loop of (2)
   on its own, started together after their imports; aggregate images/s, runs per hour and
   the packing efficiency (aggregate / (k x one process)), at the same thread budget.
5. Table I (KM Table I: full, BL, KM x 5 seeds + 3 baselines = 30 runs of 200 epochs on
   CIFAR-10) in GPU-hours, from images/s and the stated assumptions, arithmetic printed.

    .venv/bin/python scripts/bench_gpu.py                       # all of it (about 3 min on 2 CPU cores)
    .venv/bin/python scripts/bench_gpu.py --workers 2 --rounds 5 --json out.json

On a machine with a GPU the device is ``cuda``, and the step throughput measured in (2) (bf16
autocast, as ``trainer=gpu`` trains) and the packing efficiency measured in (4) are used for (5)
instead of the assumed ones.
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


def km_resnet32_step_inputs(device: torch.device):
    """The timed workload of (2) and (4): a KM ResNet-32 (seed 0), its SGD optimizer and one batch of 128."""
    from kmexp.methods import build_model

    torch.manual_seed(0)
    net = build_model({"backbone": {"name": "resnet32"}, "num_classes": 10,
                       "method": {"name": "km", "components": ["implicit", "explicit", "classifier"]},
                       "modulator": {}}).to(device).train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32, device=device), torch.randint(0, 10, (128,), device=device)
    return net, opt, x, y


def bench_step(args, device) -> dict:
    net, opt, x, y = km_resnet32_step_inputs(device)

    def steps(n=args.steps, bf16=False):
        start = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * 128 / (time.perf_counter() - start)

    if getattr(args, "step_dtypes", False):
        steps(2), steps(2, bf16=True)  # warm-up
        r = interleave({"fp32": steps, "bf16": lambda: steps(bf16=True)}, args.rounds)
        return {"km_resnet32_b128": r["fp32"], "km_resnet32_b128_bf16": r["bf16"]}
    steps(2)  # warm-up
    return {"km_resnet32_b128": statistics.median(steps() for _ in range(args.rounds))}


def step_worker(args) -> None:
    """One of the k processes of (4): import, build, warm up, say ready, wait for the start
    signal, time ``--steps`` training steps, print ``{"start", "end", "images"}`` as JSON."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    net, opt, x, y = km_resnet32_step_inputs(device)
    bf16 = device.type == "cuda"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    sync = Path(args.sync_dir)
    (sync / f"ready_{os.getpid()}").touch()
    while not (sync / "go").exists():
        time.sleep(0.01)
    start = time.time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"start": start, "end": time.time(), "images": args.steps * 128}))


def concurrent_steps(k: int, steps: int, threads: int, device: torch.device) -> float:
    """Aggregate training images/s of ``k`` :func:`step_worker` processes started together."""
    import subprocess

    with tempfile.TemporaryDirectory() as sync:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--sync-dir", sync, "--steps", str(steps),
               "--threads", str(threads), "--device", str(device)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(k)]
        while len(list(Path(sync).glob("ready_*"))) < k:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a benchmark worker exited before it was ready")
            time.sleep(0.05)
        (Path(sync) / "go").touch()
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(r["images"] for r in results) / wall


def bench_runs_per_device(args, device) -> dict:
    """(4): 1 process with the whole thread budget vs k processes sharing it, A/B interleaved."""
    k = args.runs_per_gpu
    threads_one, threads_k = args.workers, max(1, args.workers // k)
    r = interleave({"1": lambda: concurrent_steps(1, args.steps, threads_one, device),
                    str(k): lambda: concurrent_steps(k, args.steps, threads_k, device)}, args.rounds)
    per_run = table1_images_per_run(args)
    out = {"k": k, "threads": {"1": threads_one, str(k): threads_k},
           "images_per_s": {"1": r["1"], str(k): r[str(k)]},
           "runs_per_hour": {"1": r["1"] * 3600 / per_run, str(k): r[str(k)] * 3600 / per_run},
           "efficiency": r[str(k)] / (k * r["1"]), "gain": r[str(k)] / r["1"]}
    if getattr(args, "ensemble", False):
        torch.set_num_threads(args.workers)
        e = statistics.median(ensemble_steps(k, args.steps, device) for _ in range(args.rounds))
        out["ensemble"] = {"images_per_s": e, "runs_per_hour": e * 3600 / per_run, "gain": e / r["1"]}
    return out


def ensemble_steps(k: int, steps: int, device: torch.device) -> float:
    """Aggregate training images/s of ``k`` KM ResNet-32 runs (different seeds, each its own
    batch of 128) trained as ONE batched ensemble in this process: parameters and buffers
    stacked (:func:`torch.func.stack_module_state`), the step ``vmap``-ed over the runs, one SGD
    optimizer over the stacked tensors (elementwise, so each run's update is its own). The
    alternative to k processes; measured only, not a training path (it would give up each
    run's own Lightning loop, checkpoints and W&B run)."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from kmexp.methods import build_model

    def model(seed):
        torch.manual_seed(seed)
        return build_model({"backbone": {"name": "resnet32"}, "num_classes": 10,
                            "method": {"name": "km", "components": ["implicit", "explicit", "classifier"]},
                            "modulator": {}}).to(device).train()

    models = [model(s) for s in range(k)]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    trainable = {n: p for n, p in params.items() if models[0].get_parameter(n).requires_grad}
    frozen = {n: p.detach() for n, p in params.items() if n not in trainable}
    opt = torch.optim.SGD(trainable.values(), lr=0.01, momentum=0.9)
    x, y = torch.randn(k, 128, 3, 32, 32, device=device), torch.randint(0, 10, (k, 128), device=device)
    bf16 = device.type == "cuda"

    def loss(tp, fp, b, x, y):
        return torch.nn.functional.cross_entropy(functional_call(skeleton, {**tp, **fp, **b}, (x,)), y)

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                losses = vmap(loss)(trainable, frozen, buffers, x, y)
            losses.sum().backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * k * 128 / (time.perf_counter() - start)

    run(1)  # warm-up
    return run(steps)


def table1_images_per_run(args) -> float:
    """Training-image equivalents of one Table I run (evaluation at ``eval_speedup`` x the rate)."""
    return TABLE1_EPOCHS * (CIFAR_TRAIN + CIFAR_TEST / args.eval_speedup)


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
         f"packing efficiency ({gpu:,.0f} x {args.runs_per_gpu} x {args.packing_efficiency:g})",
         gpu * args.runs_per_gpu * args.packing_efficiency),
    ]:
        hours = work / rate / 3600
        lines.append(f"  {name}: {work:.3e} / {rate:,.0f} img/s / 3600 = {hours:.2f} GPU-hours")
    per_run = table1_images_per_run(args)
    packed = gpu * args.runs_per_gpu * args.packing_efficiency
    lines.append(f"  runs per GPU-hour: 1 run per GPU {gpu:,.0f} x 3600 / {per_run:.3e} = {gpu * 3600 / per_run:.2f}; "
                 f"{args.runs_per_gpu} per GPU {packed:,.0f} x 3600 / {per_run:.3e} = {packed * 3600 / per_run:.2f}")
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
    p.add_argument("--skip-runs-per-device", action="store_true", help="skip 1 vs k runs per device (4)")
    p.add_argument("--step-dtypes", action="store_true", help="(2) also with bf16 autocast (default on a GPU)")
    p.add_argument("--ensemble", action="store_true",
                   help="(4) also k runs as one vmap-batched ensemble in one process (default on a GPU)")
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one process of (4)
    p.add_argument("--sync-dir", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return step_worker(args)

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

    args.step_dtypes = args.step_dtypes or device.type == "cuda"
    report["step"] = bench_step(args, device)
    where = f"({args.workers} threads)" if device.type == "cpu" else f"on {device}"
    bf16 = (f", bf16 autocast {report['step']['km_resnet32_b128_bf16']:,.0f} images/s"
            if "km_resnet32_b128_bf16" in report["step"] else "")
    print(f"\n2. training step alone, KM ResNet-32, batch 128: fp32 {report['step']['km_resnet32_b128']:,.0f} "
          f"images/s{bf16} {where}")

    if not args.skip_epoch:
        report["digits_epoch"] = e = bench_digits_epoch(args, device)
        print(f"\n3. digits epoch ({e['images']} training images, KM ResNet-32, batch 32, Lightning): "
              f"DataLoader {e['seconds']['dataloader']:.2f} s, on-device {e['seconds']['on_device']:.2f} s, "
              f"speed-up {e['speedup']:.2f}x")

    args.ensemble = args.ensemble or device.type == "cuda"
    if not args.skip_runs_per_device:
        report["runs_per_device"] = r = bench_runs_per_device(args, device)
        k = str(r["k"])
        print(f"\n4. 1 vs {k} runs per device (KM ResNet-32 step loops, batch 128, {args.steps} steps each, "
              f"started together; {r['threads']['1']} vs {r['threads'][k]} thread(s) per process)")
        for n in ("1", k):
            print(f"  {n} process(es): {r['images_per_s'][n]:,.0f} images/s in all = "
                  f"{r['runs_per_hour'][n]:.4f} Table I runs/hour")
        print(f"  {k} runs per device: {r['gain']:.2f}x the runs per hour of 1; packing efficiency "
              f"{r['images_per_s'][k]:,.0f} / ({k} x {r['images_per_s']['1']:,.0f}) = {r['efficiency']:.2f}")
        if "ensemble" in r:
            e = r["ensemble"]
            winner = f"{k} processes" if r["images_per_s"][k] >= e["images_per_s"] else f"the {k}-run ensemble"
            print(f"  {k}-run batched ensemble in one process ({args.workers} threads): {e['images_per_s']:,.0f} "
                  f"images/s = {e['runs_per_hour']:.4f} runs/hour ({e['gain']:.2f}x 1 run); more runs per hour: "
                  f"{winner}")
        if device.type == "cuda":
            args.packing_efficiency = r["efficiency"]

    one_thread = report["loader"]["1 thread, no workers"]["torchvision"]
    gpu_step = report["step"].get("km_resnet32_b128_bf16", report["step"]["km_resnet32_b128"])
    step_ips = gpu_step if device.type == "cuda" else args.gpu_step_ips
    source = ("measured here (bf16), packing efficiency measured in (4)" if device.type == "cuda" else
              "assumed (--gpu-step-ips) and packing efficiency assumed (--packing-efficiency): no GPU here")
    print(f"\n5. Table I predicted GPU-hours (GPU step rate {source}; loader rate per core measured here)")
    report["table1"] = table1_prediction(step_ips, one_thread, args)
    print("\n".join(report["table1"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
