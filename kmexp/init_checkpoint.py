"""Save the network as it is before training: ``<run_dir>/checkpoints/init.ckpt``.

Kernel Modulation Fig. 3A compares the random convolution weights with the modulated
weights *before* KM training; the run's final checkpoint only holds the trained
modulators, so the initial ones are saved here (``save_init_checkpoint=true``). The
file has Lightning's layout for what it holds (``state_dict`` with the module's keys,
``hyper_parameters`` as plain containers), so ``torch.load(weights_only=True)`` reads it
and the model rebuilds from it like from ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class SaveInitialCheckpoint(pl.Callback):
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # ``setup`` runs before a resumed run restores its checkpoint, and the weights come from
        # the run's seed, so even a resumed run writes its true initial state. An existing file
        # is never overwritten.
        if stage != "fit" or self.path.exists() or not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "state_dict": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()},
            "hyper_parameters": dict(pl_module.hparams),
            "global_step": 0,
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)
