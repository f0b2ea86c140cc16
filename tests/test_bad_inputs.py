"""Bad input is refused before anything runs: through the real entry point (``kmexp.train``'s
Hydra main, with the command line patched in), each gives one short ``error:`` line naming
the key, a non-zero exit, no traceback and no run directory."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.conftest import run_cli

# (command line, what the one error line must say)
BAD_INPUTS = [
    (["trainer.max_epochs=abc"], "trainer.max_epochs=abc is not allowed: an integer >= -1"),
    (["seed=x"], "seed=x is not allowed: an integer >= 0"),
    (["seed=-1"], "seed=-1 is not allowed"),
    (["dataset.datamodule.batch_size=0"], "dataset.datamodule.batch_size=0 is not allowed: an integer >= 1"),
    (["dataset.datamodule.val_size=-5"], "dataset.datamodule.val_size=-5 is not allowed: an integer >= 0"),
    (["optim.lr=-1"], "optim.lr=-1 is not allowed: a number > 0"),
    (["optim.lr=fast"], "optim.lr=fast is not allowed: a number > 0"),
    (["optim.momentum=1.5"], "optim.momentum=1.5 is not allowed: a number >= 0 and < 1"),
    (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1 is not allowed: a number >= 0"),
    (["optim.name=lbfgs"], "optim.name=lbfgs is not allowed: one of sgd, adam, adamw, rmsprop, rbd"),
    (["optim.scheduler.name=step"], "optim.scheduler.name=step is not allowed: one of none, multistep"),
    (["trainer.devices=0"], "trainer.devices=0 is not allowed"),
    (["trainer.num_nodes=0"], "trainer.num_nodes=0 is not allowed: an integer >= 1"),
    (["trainer.accelerator=quantum"], "trainer.accelerator=quantum is not allowed: one of auto, cpu, gpu"),
    (["trainer.precision=8"], "trainer.precision=8 is not allowed: one of 32-true"),
    (["trainer.strategy=warp"], "trainer.strategy=warp is not allowed"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5 is not allowed: a fraction in [0.0, 1.0]"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 is not allowed: an integer >= 1"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is not allowed: a number >= 0"),
    (["trainer.deterministic=sometimes"], "trainer.deterministic=sometimes is not allowed: true or false"),
    (["test_ckpt=worst"], "test_ckpt=worst is not allowed: one of last, best"),
    (["resume=maybe"], "resume=maybe is not allowed: auto, true or false"),
    (["callbacks.progress_bar=fancy"], "callbacks.progress_bar=fancy is not allowed: one of rich, tqdm, none"),
    (["reference_accuracy=1.5"], "reference_accuracy=1.5 is not allowed: a number > 0 and <= 1"),
    (["meta.inner_steps=-1"], "meta.inner_steps=-1 is not allowed: an integer >= 0"),
    (["method=maml"], "method=maml means something only with lightning_module=fewshot"),
    (["method=anil"], "method=anil means something only with lightning_module=fewshot"),
    (["lightning_module=fewshot"], "lightning_module=fewshot needs a few-shot dataset"),
    (["dataset=fewshot_glyphs"], "dataset=fewshot_glyphs yields few-shot tasks: run it with lightning_module=fewshot"),
    (["lightning_module=multitask"], "lightning_module=multitask needs a multitask config"),
    (["lightning_module=regression"], "lightning_module='regression' is not one of ['classification', 'fewshot', 'multitask']"),
    (["trainer=ddp_sim", "dataset.datamodule.batch_size=33"],
     "dataset.datamodule.batch_size=33 is the global batch and must divide by the 2 devices"),
    (["trainer=ddp_sim", "trainer.sync_batchnorm=true"], "trainer.sync_batchnorm=true needs GPUs"),
    (["modulator.depth=0"], "modulator.depth=0 must be an integer in 1..50"),
]


def call_entry_point(args: list[str], monkeypatch) -> int:
    """``python -m kmexp.train ARGS`` in this process (runpy runs the module as ``__main__``)."""
    monkeypatch.setattr(sys, "argv", ["kmexp.train", *args])
    try:
        runpy.run_module("kmexp.train", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def test_at_least_twenty_bad_inputs():
    assert len(BAD_INPUTS) >= 20


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_short_error_and_leaves_nothing(args, message, tmp_path, monkeypatch, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("KMEXP_LOGS", str(logs))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code = call_entry_point(["logger=csv", "callbacks.progress_bar=none", *args], monkeypatch)
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0
    assert len(errors) == 1, err
    assert message in errors[0], errors[0]
    assert len(errors[0]) < 300
    assert "Traceback" not in out + err
    assert not list(logs.iterdir()), f"left behind: {[str(p) for p in logs.rglob('*')]}"


@pytest.mark.slow
def test_bad_input_through_the_command_line(tmp_path):
    proc = run_cli(["trainer.max_epochs=abc", "logger=csv"], tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: trainer.max_epochs=abc is not allowed")
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*"))
