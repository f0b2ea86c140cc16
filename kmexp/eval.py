"""Evaluate a trained model and predict: ``python -m kmexp.eval`` / ``kmexp-eval``.

::

    kmexp-eval logs/train/runs/method=km,seed=0            # a run directory (its patch or checkpoint)
    kmexp-eval path/to/last.ckpt                            # a Lightning checkpoint
    kmexp-eval patch.safetensors dataset=digits             # a patch; base rebuilt from its header
    kmexp-eval patch.safetensors --base-weights resnet50.pth   # pretrained base from another file

Writes the test metrics (``test/acc``, ``test/loss``, counts) as JSON to stdout and to
``--out`` when given. The dataset is the run's own (summary.json / patch header) unless
Hydra-style ``dataset=...`` overrides name another. :func:`predict` gives class
probabilities for a batch of images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.errors import ConfigError, KmexpError


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N, classes) of ``images`` (N, C, H, W), model in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [F.softmax(model(images[i:i + batch_size].to(device)), dim=1).cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> dict:
    """``test/acc``, ``test/loss`` (mean cross entropy) and ``test/examples`` over ``loader``."""
    model.eval()
    device = next(model.parameters()).device
    correct, loss, n = 0, 0.0, 0
    for x, y in loader:
        logits = model(x.to(device))
        y = y.to(device)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    if n == 0:
        raise ConfigError("the test set is empty")
    return {"test/acc": correct / n, "test/loss": loss / n, "test/examples": n}


def load_model(source: str | Path, base_weights: str | None = None) -> tuple[nn.Module, dict]:
    """(model in eval mode, info with ``dataset`` / ``config``) from a run directory, a
    checkpoint or a patch file."""
    from kmexp.api import load_patch
    from kmexp.patches import read_patch

    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path} does not exist (expected a run directory, a .ckpt or a .safetensors patch)")
    if path.is_dir():
        summary = path / "summary.json"
        config = json.loads(summary.read_text()).get("config") if summary.is_file() else None
        for candidate in (path / "patch.safetensors", path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                model, info = load_model(candidate, base_weights)
                return model, {**info, "config": config or info.get("config")}
        raise ConfigError(f"{path} holds neither patch.safetensors nor checkpoints/last.ckpt")
    if path.suffix == ".ckpt":
        from kmexp.lit.classification import ClassificationModule

        module = ClassificationModule.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
        summary = path.parent.parent / "summary.json"
        config = json.loads(summary.read_text()).get("config") if summary.is_file() else None
        return module.net.eval(), {"source": str(path), "config": config}
    header, _ = read_patch(path)
    if base_weights:
        recipe = header.get("recipe") or {}
        if not recipe.get("backbone"):
            raise ConfigError(f"{path} names no base backbone, so --base-weights cannot apply")
        from kmexp.api import _build

        backbone = {**recipe["backbone"], "pretrained": True, "weights_path": base_weights}
        base = _build({"backbone": backbone, "num_classes": recipe["num_classes"]}, int(header.get("seed") or 0))
        model = load_patch(path, base=base)
    else:
        model = load_patch(path)
    return model, {"source": str(path), "dataset": header.get("dataset")}


def dataset_test_loader(info: dict, overrides: list[str]):
    """The test DataLoader: the run's dataset config, or one composed from ``overrides``."""
    import hydra

    config = info.get("config")
    if config is None or overrides:
        from hydra import compose, initialize_config_dir

        from kmexp.config import register_resolvers
        from kmexp.resources import config_dir

        register_resolvers()
        if not overrides and not info.get("dataset"):
            raise ConfigError("no dataset known for this model: add e.g. dataset=digits")
        overrides = overrides or [f"dataset={info['dataset']}"]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        dm_cfg = cfg.dataset.datamodule
    else:
        dm_cfg = config["dataset"]["datamodule"]
    datamodule = hydra.utils.instantiate(dm_cfg)
    datamodule.setup("test")
    return datamodule.test_dataloader()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kmexp-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="run directory, Lightning checkpoint (.ckpt) or task patch (.safetensors)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides choosing the data, e.g. dataset=digits")
    p.add_argument("--base-weights", help="pretrained base weights file (overrides the patch header's)")
    p.add_argument("--out", help="also write the metrics to this JSON file")
    args = p.parse_args(argv)
    try:
        from kmexp.components import count_parameters

        model, info = load_model(args.source, args.base_weights)
        metrics = evaluate(model, dataset_test_loader(info, args.overrides))
        result = {**metrics, **count_parameters(model), "source": info["source"]}
    except KmexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
