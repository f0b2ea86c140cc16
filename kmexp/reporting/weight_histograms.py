"""Kernel Modulation Fig. 3: distributions of convolution weights before and after KM training.

    python -m kmexp.weight_histograms --km-run RUN_DIR [--full-run RUN_DIR] [--layers 'layer3.*']
    python -m kmexp.weight_histograms --runs logs/reproduce/runs --seed 0   # Table I's km and full runs

Fig. 3 of the paper (ResNet-32, CIFAR-10): A, before KM training the modulated weights
preserve the random convolution weights; B, after KM training the modulated weights have
a wider distribution than the random ones; the weights of a fully trained network are
shown for comparison. Read from checkpoints:

- random convolution weights: the frozen ``parametrizations.weight.original`` of the KM run;
- modulated weights before / after KM training: ``conv.weight`` (= g(W; U), Eq. 3) of the
  KM run's ``checkpoints/init.ckpt`` (written with ``save_init_checkpoint=true``, as the
  Table I's km row does) and ``checkpoints/last.ckpt``;
- fully trained weights: ``conv.weight`` of a full run's ``checkpoints/last.ckpt``.

Each network is rebuilt from its checkpoint's hyperparameters, so the modulated weights are
computed by the same modules that trained them. Every convolution whose name matches
``--layers`` (all by default) is pooled. Writes a PNG (default ``<km-run>/fig3_weights.png``)
and the statistics of each distribution beside it (``.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import sys
from pathlib import Path

import torch
from torch import nn

from kmexp.errors import KmexpError
from kmexp.methods import build_model
from kmexp.modulation import is_modulated

RANDOM = "random conv weights"
BEFORE = "modulated, before KM training"
AFTER = "modulated, after KM training"
FULL = "fully trained network"


def load_network(ckpt_path: str | Path) -> nn.Module:
    """Rebuild ``net`` of a classification checkpoint from its hyperparameters and load its weights."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise KmexpError(f"checkpoint {ckpt_path} not found")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model_cfg = (ckpt.get("hyper_parameters") or {}).get("model")
    if model_cfg is None:
        raise KmexpError(f"{ckpt_path} has no hyper_parameters.model: not a kmexp classification checkpoint")
    net = build_model(model_cfg)
    state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def conv_weights(net: nn.Module, patterns: list[str], frozen: bool = False) -> dict[str, torch.Tensor]:
    """Flattened weights of every ``nn.Conv2d`` whose name matches ``patterns``.

    ``frozen=True`` returns the random base weight under a kernel modulator instead of the
    modulated weight (``conv.weight``).
    """
    out = {}
    for name, m in net.named_modules():
        if not isinstance(m, nn.Conv2d) or not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        if frozen:
            if not is_modulated(m):
                raise KmexpError(f"convolution {name!r} has no kernel modulator: the KM run is not a KM network")
            w = m.parametrizations.weight.original
        else:
            w = m.weight
        out[name] = w.detach().reshape(-1).float().clone()
    if not out:
        raise KmexpError(f"no convolution matches --layers {patterns}")
    return out


def collect(km_run: Path, full_run: Path | None, patterns: list[str]) -> dict[str, torch.Tensor]:
    """The pooled weights of each distribution of Fig. 3, by series name."""
    init_ckpt = km_run / "checkpoints" / "init.ckpt"
    if not init_ckpt.is_file():
        raise KmexpError(
            f"{km_run} has no checkpoints/init.ckpt (the KM network before training): train the KM run "
            f"with save_init_checkpoint=true (Table I's km row sets it)"
        )
    before, after = load_network(init_ckpt), load_network(km_run / "checkpoints" / "last.ckpt")
    random_before = conv_weights(before, patterns, frozen=True)
    random_after = conv_weights(after, patterns, frozen=True)
    if random_before.keys() != random_after.keys() or any(
        not torch.equal(random_before[k], random_after[k]) for k in random_before
    ):
        raise KmexpError(f"init.ckpt and last.ckpt of {km_run} hold different frozen weights: not one run")
    series = {
        RANDOM: torch.cat(list(random_after.values())),
        BEFORE: torch.cat(list(conv_weights(before, patterns).values())),
        AFTER: torch.cat(list(conv_weights(after, patterns).values())),
    }
    if full_run is not None:
        full = conv_weights(load_network(full_run / "checkpoints" / "last.ckpt"), patterns)
        missing = sorted(set(random_after) - set(full))
        if missing:
            raise KmexpError(f"the full run has no convolution(s) {missing[:3]}...: not the KM run's backbone")
        series[FULL] = torch.cat([full[k] for k in random_after])
    return series


def statistics(series: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    return {
        name: {"count": int(w.numel()), "mean": float(w.mean()), "std": float(w.std()), "abs_max": float(w.abs().max())}
        for name, w in series.items()
    }


def plot(series: dict[str, torch.Tensor], out: Path, title: str = "", bins: int = 120) -> Path:
    """Panel A: random vs modulated before training; panel B: random, modulated after, fully trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # x range: the envelope of every series' 0.1-99.9 percentiles (a few extreme weights would squash the bins)
    lo, hi = float("inf"), float("-inf")
    for w in series.values():
        sample = w[torch.randperm(w.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        q = torch.quantile(sample, torch.tensor([0.001, 0.999])).tolist()
        lo, hi = min(lo, q[0]), max(hi, q[1])
    edges = torch.linspace(lo, hi, bins + 1).numpy()
    panels = (
        ("A: before KM training", (RANDOM, BEFORE)),
        ("B: after KM training", (RANDOM, AFTER, FULL)),
    )
    colors = {RANDOM: "tab:gray", BEFORE: "tab:blue", AFTER: "tab:blue", FULL: "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120, sharey=True)
    for ax, (panel_title, names) in zip(axes, panels, strict=True):
        for name in names:
            if name not in series:
                continue
            filled = name == RANDOM
            ax.hist(series[name].numpy(), bins=edges, density=True, color=colors[name], label=name,
                    histtype="stepfilled" if filled else "step", alpha=0.35 if filled else 1.0, linewidth=1.4)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("weight value")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def find_run(runs: Path, table_id: str, row: str, seed: int, extra: list[str] = ()) -> Path:
    """The run directory of ``table_id``'s ``row`` with ``seed`` under ``runs`` (``<logs>/runs`` of
    ``kmexp.reproduce``; ``extra``: the overrides it ran with, e.g. the mini profile's)."""
    from kmexp.reporting.runs import plan
    from kmexp.reporting.tables import TABLES

    if table_id not in TABLES or row not in {r.key for r in TABLES[table_id].rows}:
        raise KmexpError(f"no row {row!r} in table {table_id!r}")
    table = TABLES[table_id]
    cell = plan(table_id, dataclasses.replace(table, rows=tuple(r for r in table.rows if r.key == row)), [seed],
                extra=extra)[0]
    path = Path(runs) / cell.run_id
    if not (path / "summary.json").is_file():
        raise KmexpError(f"no run of {table_id}/{row} seed={seed} under {runs} (expected {path})")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Kernel Modulation Fig. 3: weight distributions before/after KM training")
    p.add_argument("--km-run", type=Path, default=None, help="run dir of a KM run saved with save_init_checkpoint=true")
    p.add_argument("--full-run", type=Path, default=None, help="run dir of a fully trained run of the same backbone")
    p.add_argument("--runs", type=Path, default=None,
                   help="instead of run dirs: the runs dir of kmexp.reproduce holding --table's km and full rows")
    p.add_argument("--table", default="table1", help="with --runs: the table whose km and full rows to read")
    p.add_argument("--seed", type=int, default=0, help="with --runs: the seed of the runs (default 0)")
    p.add_argument("--layers", default="*", help="comma-separated glob patterns of conv names (default: every conv)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: <km-run>/fig3_weights.png)")
    args, extra = p.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]  # the overrides the runs were launched with
    if (args.km_run is None) == (args.runs is None):
        p.error("give either --km-run (and optionally --full-run) or --runs")
    try:
        km_run, full_run = args.km_run, args.full_run
        if args.runs is not None:
            km_run = find_run(args.runs, args.table, "km", args.seed, extra)
            full_run = find_run(args.runs, args.table, "full", args.seed, extra)
        series = collect(km_run, full_run, args.layers.split(","))
    except KmexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = args.out or km_run / "fig3_weights.png"
    stats = statistics(series)
    plot(series, out, title=f"Kernel Modulation Fig. 3: conv weights ({args.layers}) of {km_run.name}"[:150])
    out.with_suffix(".json").write_text(json.dumps(stats, indent=2))
    for name, s in stats.items():
        print(f"{name:32s} n={s['count']:,}  std={s['std']:.4f}")
    print(f"[kmexp] wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
