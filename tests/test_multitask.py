"""Multi-task learning with private model patches (model patches Sec. 5.3 / 5.4): gradients of
shared and private tensors, per-task statistics, S/B / DW / KM patches, parameter counts against
Tables 4 and 5, task patches, the combined datamodule, and a tiny run through the real entry point."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from kmexp.components import tag_parameters
from kmexp.data.multitask import MultiTaskDataModule, group_streams, label_permutation, parse_tasks
from kmexp.errors import ConfigError, PatchError
from kmexp.lit.multitask import MultiTaskModule
from kmexp.patches import apply_patch
from tests.conftest import TINY, run_cli, summaries
from tests.test_model_patches import paper, rounded_like_paper

DIGITS = {"name": "digits", "num_classes": 10,
          "datamodule": {"_target_": "kmexp.data.digits.DigitsDataModule", "batch_size": 8, "val_size": 50,
                         "test_size": 50}}
FULL = {"name": "full", "components": ["convolution", "implicit", "classifier"]}
KM = {"name": "km", "components": ["implicit", "explicit", "classifier"]}
TINY_MOBILENET = {"name": "mobilenet_v2", "width_mult": 0.35, "input_size": None}


def dataset(name: str, classes: int) -> dict:
    return {"name": name, "num_classes": classes, "datamodule": {"_target_": "unused"}}


def module(private, method=FULL, tasks=None, backbone=TINY_MOBILENET, run_classes=None) -> MultiTaskModule:
    torch.manual_seed(0)
    tasks = tasks or {"a": {"dataset": dataset("a", 10)}, "b": {"dataset": dataset("b", 5)}}
    return MultiTaskModule(
        model={"backbone": backbone, "num_classes": run_classes, "method": method,
               "modulator": {"activation": "tanh", "init": "default", "depth": 2, "init_std": 1e-3}},
        optim={"name": "sgd", "lr": 0.1},
        multitask={"private": private, "tasks": tasks},
    )


def batch(classes: int, n: int = 4, size: int = 32):
    return torch.randn(n, 3, size, size), torch.randint(0, classes, (n,))


def grads_after(m: MultiTaskModule, tasks: list[str]) -> tuple[dict, dict]:
    """(shared grads, {task: private grads}) after backpropagating the summed loss of ``tasks``."""
    m.zero_grad(set_to_none=True)
    loss = sum(F.cross_entropy(m.task_forward(t, x), y) for t, (x, y) in
               ((t, batch(m.spec[t].num_classes)) for t in tasks))
    loss.backward()
    shared = {n: p.grad for n, p in m.net.named_parameters() if p.requires_grad}
    private = {t: {n: p.grad for n, p in m.patches[t].named_parameters()} for t in m.task_names}
    return shared, private


@pytest.mark.parametrize(
    "private,method,patch_tags",
    [
        (["implicit", "classifier"], FULL, {"implicit", "classifier"}),  # Table 4: S/B patch + last layer
        (["depthwise", "classifier"], FULL, {"depthwise", "classifier"}),  # DW patch
        (["explicit", "classifier"], KM, {"explicit", "classifier"}),  # kernel modulators (beyond the papers)
    ],
)
def test_shared_weights_learn_from_every_task_private_patches_only_from_their_own(private, method, patch_tags):
    m = module(private, method)
    tags = tag_parameters(m.net)
    assert m.private_names and all(tags[n] & patch_tags for n in m.private_names)
    assert not any(p.requires_grad for n, p in m.net.named_parameters() if n in set(m.private_names))

    shared_a, private_a = grads_after(m, ["a"])
    assert all(g is not None for g in private_a["a"].values())
    assert all(g is None for g in private_a["b"].values())  # task b's patch never sees task a's loss
    shared_b, private_b = grads_after(m, ["b"])
    assert all(g is not None for g in private_b["b"].values())
    assert all(g is None for g in private_b["a"].values())
    # every shared weight learns from each task
    assert shared_a and all(shared_a[n] is not None and shared_b[n] is not None for n in shared_a)
    if "explicit" in private:  # KM: the frozen kernels stay frozen and shared; the norms are shared
        assert not any(p.requires_grad for n, p in m.net.named_parameters() if "convolution" in tags[n])
        assert all("implicit" in tags[n] for n in shared_a)


def test_shared_gradient_is_exactly_the_sum_of_the_task_gradients():
    m = module(["implicit", "classifier"])
    m.eval()  # batch statistics would make the three passes differ
    xa, ya = batch(10)
    xb, yb = batch(5)

    def shared_grads(tasks):
        m.zero_grad(set_to_none=True)
        loss = 0.0
        if "a" in tasks:
            loss = loss + F.cross_entropy(m.task_forward("a", xa), ya)
        if "b" in tasks:
            loss = loss + F.cross_entropy(m.task_forward("b", xb), yb)
        loss.backward()
        return {n: p.grad.clone() for n, p in m.net.named_parameters() if p.requires_grad}

    ga, gb, gab = shared_grads("a"), shared_grads("b"), shared_grads("ab")
    assert gab.keys() == ga.keys() == gb.keys()
    for n in gab:
        assert torch.allclose(gab[n], ga[n] + gb[n], atol=1e-6), n


def test_each_task_keeps_its_own_batch_norm_statistics():
    m = module(["implicit", "classifier"])
    m.train()
    bn = next(n for n, mod in m.net.named_modules() if isinstance(mod, torch.nn.BatchNorm2d))
    key = f"{bn}.running_mean"
    net_before = m.net.get_buffer(key).clone()
    b_before = m.patches["b"].tensors()[key].clone()
    m.task_forward("a", batch(10)[0] + 3.0)
    assert not torch.equal(m.patches["a"].tensors()[key], b_before)  # task a re-estimated its statistics
    assert torch.equal(m.patches["b"].tensors()[key], b_before)
    assert torch.equal(m.net.get_buffer(key), net_before)
    assert m.patches["a"].tensors()[f"{bn}.num_batches_tracked"] == 1


def test_shared_statistics_when_the_s_b_patch_is_not_private():
    m = module(["classifier"])
    assert not any(k.endswith("running_mean") for k in m.patches["a"].tensors())
    m.train()
    key = next(f"{n}.running_mean" for n, mod in m.net.named_modules() if isinstance(mod, torch.nn.BatchNorm2d))
    before = m.net.get_buffer(key).clone()
    m.task_forward("b", batch(5)[0])
    assert not torch.equal(m.net.get_buffer(key), before)


def test_km_private_modulators_change_only_their_task():
    m = module(["explicit", "classifier"], KM, tasks={"a": {"dataset": dataset("a", 6)}, "b": {"dataset": dataset("b", 6)}})
    m.eval()
    x = batch(6)[0]
    out_a, out_b = m.task_forward("a", x), m.task_forward("b", x)
    mod = next(k for k in m.patches["a"].tensors() if "parametrizations" in k and "weights" in k)
    with torch.no_grad():
        m.patches["a"].tensors()[mod].mul_(0.5)
    changed = (m.task_forward("a", x) - out_a).abs().max()
    assert changed > 1e-2 * out_a.abs().max()  # (a random network's logits are tiny: compare relatively)
    assert torch.equal(m.task_forward("b", x), out_b)


def test_task_model_matches_the_patched_forward_and_its_patch_round_trips(tmp_path):
    m = module(["implicit", "classifier"])
    m.train()
    for t in m.task_names:  # make the patches differ from the initialization
        m.task_forward(t, batch(10)[0])
        with torch.no_grad():
            for p in m.patches[t].parameters():
                p.add_(0.01 * torch.randn_like(p))
    m.eval()
    x = batch(10)[0]
    for t in m.task_names:
        standalone = m.task_model(t).eval()
        assert torch.allclose(standalone(x), m.task_forward(t, x), atol=1e-6)
    paths = m.export_task_patches(tmp_path)
    with safe_open(str(paths["b"]), framework="pt") as f:
        header = json.loads(f.metadata()["kmexp"])
    assert header["task"] == "b" and header["components"] == ["implicit", "classifier"]
    fresh = m.task_model("b")
    with torch.no_grad():
        for p in fresh.parameters():
            if p.requires_grad:
                p.zero_()
    apply_patch(fresh, paths["b"])
    assert torch.allclose(fresh.eval()(x), m.task_forward("b", x), atol=1e-6)
    with pytest.raises(PatchError):  # task a's patch (10 classes) does not fit task b's network (5)
        apply_patch(m.task_model("b"), paths["a"])


# --------------------------------------------------------------------------- Tables 4 and 5 counts

IMAGENET, PLACES = dataset("imagenet", 1000), dataset("places365", 365)
MOBILENET = {"name": "mobilenet_v2", "input_size": None}


@pytest.mark.parametrize(
    "row,private,total",
    [("sb_patch_last_layer", ["implicit", "classifier"], 4_006_549), ("last_layer", ["classifier"], 3_972_437)],
)
def test_table4_parameter_counts(row, private, total):
    m = module(private, tasks={"imagenet": {"dataset": IMAGENET}, "places365": {"dataset": PLACES}}, backbone=MOBILENET)
    counts = m.parameter_counts()
    assert counts["params/total"] == total
    sb = 34_112 if "implicit" in private else 0
    assert counts["params/private/imagenet"] == sb + 1_281_000
    assert counts["params/private/places365"] == sb + 467_565
    # the paper prints 3.97M / 3.93M (1% under ours); the difference of the two rows is one S/B patch
    assert rounded_like_paper(total, paper("mp_table4", row, "total_params"), 0.011)


def test_table5_parameter_counts():
    tasks = {f"res{r}": {"input_size": r} for r in (224, 192, 160, 128, 96)}  # all read the run's ImageNet
    sb = module(["implicit"], tasks=tasks, backbone=MOBILENET, run_classes=1000)
    assert list(sb.tasks_of_stream) == ["res224"] and sb.tasks_of_stream["res224"] == list(tasks)
    sb = sb.parameter_counts()
    shared = module([], tasks=tasks, backbone=MOBILENET, run_classes=1000).parameter_counts()
    assert sb["params/total"] == 3_504_872 + 4 * 34_112 == 3_641_320
    assert shared["params/total"] == 3_504_872
    assert rounded_like_paper(sb["params/total"], paper("mp_table5", "sb_patch", "total_params"), 0.02)
    assert round(shared["params/total"], -5) == paper("mp_table5", "all_shared", "total_params")
    # "1% of extra parameters per each resolution" (Sec. 5.4)
    assert round(100 * 34_112 / 3_504_872) == paper("mp_text_claims", "domain_adaptation", "extra_params_per_resolution")
    assert rounded_like_paper(5 * 3_504_872, paper("mp_table5", "independent", "total_params"), 0.01)


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(private=["depthwise", "classifier"], method={"name": "bl", "components": ["implicit", "classifier"]}),
         "does not train"),
        (dict(private=["implicit"]), "classifier must be private"),
        (dict(private=["implicit"], tasks={"a.b": {"dataset": DIGITS}}), "must not be empty or contain"),
        (dict(private=["implicit"], tasks={"a": {"dataset": DIGITS, "lr": 1}}), "unknown option"),
        (dict(private=["implicit"], tasks={"a": {"dataset": DIGITS, "input_size": 16}},
              backbone={"name": "mobilenet_v2", "width_mult": 0.35, "input_size": 32}), "backbone.input_size=null"),
        (dict(private=["implicit"], tasks={"a": {"dataset": DIGITS}, "b": {"input_size": 16}}, run_classes=10),
         "mixes both"),
        (dict(private=["implicit"], tasks={"a": {}}), "must be a dataset config"),  # no run dataset either
    ],
)
def test_bad_multitask_configs_fail_clearly(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        module(**kwargs)
    with pytest.raises(ConfigError, match="needs tasks"):
        parse_tasks({})


# --------------------------------------------------------------------------- data


def test_streams_are_shared_by_tasks_reading_the_same_data():
    specs = parse_tasks({
        "res32": {"dataset": DIGITS, "input_size": 32},
        "res16": {"dataset": DIGITS, "input_size": 16},
        "permuted": {"dataset": DIGITS, "relabel_seed": 1},
    })
    assert group_streams(specs) == {"res32": ["res32", "res16"], "permuted": ["permuted"]}


def test_datamodule_combines_tasks_and_permutes_labels():
    dm = MultiTaskDataModule({"plain": {"dataset": DIGITS}, "permuted": {"dataset": DIGITS, "relabel_seed": 3}},
                             batch_size=16)
    dm.setup("fit")
    assert dm.stream_names == ["plain", "permuted"]
    perm = label_permutation(10, 3)
    assert not torch.equal(perm, torch.arange(10))
    plain, permuted = dm.datamodules["plain"]._datasets[2], dm.datamodules["permuted"]._datasets[2]
    for i in range(20):  # same images, labels mapped through the permutation
        assert torch.equal(plain[i][0], permuted[i][0])
        assert permuted[i][1] == int(perm[int(plain[i][1])])
    train = iter(dm.train_dataloader())
    first, _, _ = next(train)
    assert set(first) == {"plain", "permuted"} and first["plain"][0].shape == (16, 3, 32, 32)
    assert len(dm.val_dataloader().flattened) == 2


# --------------------------------------------------------------------------- the real entry point


@pytest.mark.slow
def test_tiny_multitask_run_through_the_entry_point(tmp_path):
    run_cli([
        "lightning_module=multitask", "dataset=multitask", "method=full", "backbone=mobilenet_v2",
        "backbone.width_mult=0.35", "backbone.input_size=null", "+multitask=sb_patch_last_layer",
        "+dataset@multitask.tasks.digits.dataset=digits", "+dataset@multitask.tasks.permuted.dataset=digits",
        "+multitask.tasks.permuted.relabel_seed=1", *TINY,
    ], tmp_path)
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["dataset"] == "multitask"
    for task in ("digits", "permuted"):
        assert 0.0 <= s[f"test/{task}/acc"] <= 1.0
    assert s["test/acc"] == pytest.approx((s["test/digits/acc"] + s["test/permuted/acc"]) / 2)
    assert s["params/total"] == s["params/shared"] + s["params/private/digits"] + s["params/private/permuted"]
    assert s["private_components"] == ["implicit", "classifier"]
    run_dir = tmp_path / "train" / s["run_dir"].split("/train/")[-1]
    for task in ("digits", "permuted"):
        with safe_open(str(run_dir / "task_patches" / f"{task}.safetensors"), framework="pt") as f:
            assert json.loads(f.metadata()["kmexp"])["task"] == task


@pytest.mark.slow
def test_multitask_without_its_config_fails_with_one_clear_message(tmp_path):
    proc = run_cli(["lightning_module=multitask", "dataset=multitask", *TINY], tmp_path, check=False)
    assert proc.returncode == 1
    assert "+multitask=sb_patch_last_layer" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_tiny_multi_resolution_run_through_the_entry_point(tmp_path):
    run_cli(["experiment=digits/mp_multires_sb", *TINY], tmp_path)
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["dataset"] == "digits"
    assert {t: v["input_size"] for t, v in s["tasks"].items()} == {"res32": 32, "res24": 24, "res16": 16}
    assert all(0.0 <= s[f"test/{t}/acc"] <= 1.0 for t in ("res32", "res24", "res16"))
    sb = s["params/private/res32"]
    assert sb == s["params/private/res16"] > 0 and s["params/total"] == s["params/shared"] + 3 * sb
