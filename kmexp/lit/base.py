"""What every LightningModule of kmexp shares; subclasses supply only their step logic.

- the method, parsed once from the ``model`` section, and the network it builds
  (:func:`kmexp.methods.build_model`);
- norm freezing: with ``norm_stats: frozen`` normalization layers stay in eval mode
  while training, so they keep the base model's running statistics;
- the NaN guard: a non-finite training loss stops the run with a clear message (the
  last checkpoint is intact); flagged on the device, read back every
  ``nan_check_every_n_steps`` steps so a GPU is not synchronised every step;
- optimizer groups (weight decay as the injected modules declare it) and the schedule
  (:mod:`kmexp.optim`);
- when parametrized weights (Kernel Modulation's W_mod) are computed: once per optimizer
  step in training and once per evaluation (:mod:`kmexp.modulated_weights`), in modules
  that set :attr:`MethodModule.reuses_parametrized_weights`;
- the speed settings ``memory_format`` and ``compile`` (:mod:`kmexp.lit.speed`);
- the figures for summary.json (:meth:`MethodModule.summary`; written by
  :class:`kmexp.lit.summary.RunSummary`).

Modules are built from plain config dicts only, so ``load_from_checkpoint`` can rebuild
them from the saved hyperparameters. Each subclass builds itself from the composed
config with ``from_config``; ``lightning_module`` in the config names it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from kmexp.components import count_parameters, freeze_norm_statistics, tag_parameters, weight_decay_overrides
from kmexp.errors import NonFiniteLossError
from kmexp.lit import speed
from kmexp.methods import Method, build_model, parse_method
from kmexp.modulated_weights import StepWeights, evaluation_weights, parametrized_tensors, using_weights
from kmexp.optim import build_optimizer, optimizer_summary, optimizers_for_lightning, param_groups


def plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


class MethodModule(pl.LightningModule):
    method: Method
    net: torch.nn.Module

    def build_net(self, model: dict, components: Iterable[str] | None = None, **changes) -> None:
        """Parse the method once and build ``self.net`` (``changes`` update ``model``)."""
        self.method = parse_method(model["method"])
        self.net = build_model({**model, **changes}, self.method, components)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MethodModule:
        return cls(model=plain(cfg.model), optim=plain(cfg.optim))

    #: True in modules whose training forward is ``self(x)`` under automatic optimization and
    #: whose evaluation changes no parameter (not few-shot: its inner loop adapts modulators).
    reuses_parametrized_weights: bool = False
    #: Speed settings (:mod:`kmexp.lit.speed`), set by the entry point from the config.
    memory_format: str | None = None
    compile: bool | str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        held = self.__dict__.get("_eval_weights")
        if held is not None and not torch.is_grad_enabled():
            with using_weights(held):
                return self.net(x)
        step = self.__dict__.get("_step_weights")
        if step is not None and self.training and torch.is_grad_enabled():
            return step.forward(self.net, x)
        return self.net(x)

    # ------------------------------------------------------------ when W_mod is computed
    def _reuse_weights(self) -> bool:
        return self.reuses_parametrized_weights and bool(parametrized_tensors(self.net))

    def _open_step_weights(self) -> None:
        """Training: W_mod once per optimizer step (kmexp.modulated_weights.StepWeights).
        Not under DDP: the chained gradients would reach the modulators after the reducer ran."""
        use = self._reuse_weights() and self.automatic_optimization and self.trainer.world_size == 1
        self.__dict__["_step_weights"] = StepWeights() if use else None

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        step = self.__dict__.get("_step_weights")
        if step is not None and optimizer_closure is not None:
            closure = optimizer_closure

            def optimizer_closure():  # the step's last micro-batch, then W_mod's backward once
                result = closure()
                step.backward()
                return result
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def on_train_epoch_start(self) -> None:
        step = self.__dict__.get("_step_weights")
        if step is not None:
            step.reset()

    def _hold_evaluation_weights(self) -> None:
        self._apply_speed_settings()
        if self._reuse_weights():
            self.__dict__["_eval_weights"] = evaluation_weights(self.net)

    def _drop_evaluation_weights(self) -> None:
        self.__dict__["_eval_weights"] = None

    def on_test_start(self) -> None:
        self._hold_evaluation_weights()

    def on_test_end(self) -> None:
        self._drop_evaluation_weights()

    def on_predict_start(self) -> None:
        self._hold_evaluation_weights()

    def on_predict_end(self) -> None:
        self._drop_evaluation_weights()

    def on_validation_end(self) -> None:
        self._drop_evaluation_weights()

    # ------------------------------------------------------------ memory format, compile
    def _apply_speed_settings(self) -> None:
        if self.__dict__.get("_memory_format") is not None:
            return  # once per run
        fmt = speed.resolve_memory_format(self.memory_format, self.device)
        self.__dict__["_memory_format"] = fmt
        speed.network_to_memory_format(self.net, fmt)
        backend = speed.compile_backend(self.compile)
        if backend is not None:
            speed.compile_network(self.net, backend)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        fmt = self.__dict__.get("_memory_format")
        return batch if fmt is None else speed.batch_to_memory_format(batch, fmt)

    def on_fit_start(self) -> None:
        self._apply_speed_settings()
        self._open_step_weights()
        numbers = {k: float(v) for k, v in self.summary().items() if isinstance(v, (int, float))}
        for logger in self.loggers:  # e.g. RBD: params/trainable = d
            logger.log_hyperparams(numbers)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.method.norm_stats == "frozen":
            freeze_norm_statistics(self.net)
        return self

    #: Non-finite losses are flagged on the device every step but read back (a host sync)
    #: only every this many checks, and before validation and every checkpoint save.
    #: ``None``: every check on CPU (reading a CPU tensor costs no sync), every 50 on an
    #: accelerator. Set by the entry point from ``nan_check_every_n_steps``.
    nan_check_every_n_steps: int | None = None

    def _nan_check_interval(self, device: torch.device) -> int:
        if self.nan_check_every_n_steps is not None:
            return max(int(self.nan_check_every_n_steps), 1)
        return 1 if device.type == "cpu" else 50

    def check_finite(self, loss: torch.Tensor, what: str = "training loss",
                     hint: str = "lower the learning rate") -> None:
        """Stop the run with :class:`NonFiniteLossError` on a NaN/inf loss.

        The test runs on the loss's device: the step and value of the first non-finite loss
        of each kind (``what``) are kept in device tensors, and only
        :meth:`raise_if_nonfinite` reads them on the host, every
        :attr:`nan_check_every_n_steps` checks and before any validation or checkpoint, so
        no checkpoint ever holds the diverged weights.
        """
        loss = loss.detach()
        pending = self.__dict__.setdefault("_nonfinite", {})
        if what not in pending:
            pending[what] = [torch.full((), -1, dtype=torch.long, device=loss.device),
                             torch.zeros((), dtype=torch.float32, device=loss.device), hint]
        state = pending[what]
        first = ~torch.isfinite(loss) & (state[0] < 0)
        state[0] = torch.where(first, self.global_step, state[0])
        state[1] = torch.where(first, loss.float(), state[1])
        calls = self.__dict__.get("_finite_checks", 0) + 1
        self.__dict__["_finite_checks"] = calls
        if calls % self._nan_check_interval(loss.device) == 0:
            self.raise_if_nonfinite()

    def raise_if_nonfinite(self) -> None:
        """Read the flags of :meth:`check_finite` (one host sync) and raise on the first hit."""
        for what, (step, value, hint) in self.__dict__.get("_nonfinite", {}).items():
            if step.item() >= 0:
                raise NonFiniteLossError(
                    f"non-finite {what} ({value.item()}) at step {step.item()}; "
                    f"the last checkpoint is intact: {hint} and resume with resume=true"
                )

    def on_validation_start(self) -> None:
        self.raise_if_nonfinite()
        self._hold_evaluation_weights()

    def on_train_epoch_end(self) -> None:
        self.raise_if_nonfinite()

    def on_train_end(self) -> None:
        self.raise_if_nonfinite()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.raise_if_nonfinite()

    def optimizer_groups(self) -> list[dict]:
        return param_groups(self.net.named_parameters(), weight_decay_overrides(self.net), self.hparams.optim,
                            tag_parameters(self.net))  # groups named by component: lr/explicit ...

    def configure_optimizers(self):
        cfg = self.hparams.optim
        return optimizers_for_lightning(build_optimizer(self.optimizer_groups(), cfg), cfg, self._trainer)

    def summary(self) -> dict:
        """Parameter counts, method and components, plus the module's :meth:`extra_summary`."""
        return {
            **count_parameters(self.net),
            "method": self.method.name,
            "components": list(self.method.components),
            **optimizer_summary(self.net, self.hparams.optim),
            **self.extra_summary(),
        }

    def extra_summary(self) -> dict:
        """Module-specific figures (FLOPs, inner-loop counts, per-task patches ...)."""
        return {}
