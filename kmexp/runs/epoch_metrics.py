"""Epoch-level training metrics across a mid-epoch resume.

Values logged with ``on_epoch=True`` (``train/loss`` epoch mean, ``train/acc``) accumulate in
Lightning's result collection and in torchmetrics states, neither of which is in a Lightning
checkpoint: after a mid-epoch resume they would average only the batches after the resume.
:func:`capture` stores their accumulators; :func:`merge` adds them back once the resumed epoch
has logged its first batch. Accumulation is a sum (mean = sum / count, max, min), and
``saved + current`` is the same floating-point operation as the uninterrupted
``previous + current``, so the epoch values come out bit-identical.

This reads Lightning's result collection (``trainer._results``), an internal structure:
when a Lightning upgrade changes it, :func:`capture` returns nothing and only these epoch
averages of the interrupted epoch are affected (a warning says so), never the weights.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def _entries(trainer):
    results = getattr(trainer, "_results", None)
    if results is None:
        return []
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

    return [(k, v) for k, v in results.items() if isinstance(v, _ResultMetric) and v.meta.on_epoch]


def capture(trainer) -> dict:
    out = {}
    try:
        for key, rm in _entries(trainer):
            if rm.is_tensor:
                state = {"value": rm.value.detach().cpu().clone()}
                if rm.meta.is_mean_reduction:
                    state["cumulated_batch_size"] = rm.cumulated_batch_size.detach().cpu().clone()
                out[key] = state
            else:  # a torchmetrics Metric logged by object
                metric = rm.value
                out[key] = {"metric": {n: s.detach().cpu().clone() for n, s in metric.metric_state.items()
                                       if isinstance(s, torch.Tensor)},
                            "update_count": int(metric._update_count)}
    except Exception as e:  # noqa: BLE001 - never block a checkpoint over log averages
        log.warning("epoch metric accumulators not saved (%s); the interrupted epoch's averages will restart", e)
        return {}
    return out


def merge(trainer, saved: dict) -> None:
    entries = dict(_entries(trainer))
    for key, state in saved.items():
        rm = entries.get(key)
        if rm is None:
            continue
        if "metric" in state:
            metric = rm.value
            for name, value in state["metric"].items():
                current = getattr(metric, name, None)
                if isinstance(current, torch.Tensor) and metric._reductions.get(name) is not None:
                    setattr(metric, name, value.to(current.device) + current)
            metric._update_count += state["update_count"]
            metric._computed = None
        else:
            rm.value = state["value"].to(rm.value.device) + rm.value
            if "cumulated_batch_size" in state:
                rm.cumulated_batch_size = state["cumulated_batch_size"].to(rm.value.device) + rm.cumulated_batch_size
