"""KM's few-shot inner loop: which parameters adapt, and which variant gives the paper's "< 51X".

KM Sec. IV-C: KM beats MAML on two Table III tasks "even when using < 51X trainable
parameters". On the Omniglot Conv4 (20 ways): MAML adapts 113,236 parameters; KM's
modulators + classifier 1,948 (58.1x fewer); with the batch-norm offsets beta (256) in the
inner loop too, 2,204 (51.4x): the paper's ratio.
"""

import pytest
from omegaconf import OmegaConf

from kmexp.inner_loop import inner_loop_names
from kmexp.methods import build_model, parse_method
from tests.test_configs import compose_cfg

OFFSETS = "method.inner_components=[explicit,norm_offset,classifier]"
VARIANTS = {"maml": ["method=maml"], "km": ["method=km"], "km_offsets": ["method=km", OFFSETS]}


def inner_count(variant: str, task: str = "omniglot_20w1s") -> int:
    cfg = compose_cfg([f"experiment=table3/{task}", *VARIANTS[variant]])
    net = build_model(OmegaConf.to_container(cfg.model, resolve=True))
    names = set(inner_loop_names(net, parse_method(cfg.method).inner_components))
    return sum(p.numel() for n, p in net.named_parameters() if n in names)


def test_inner_loop_sizes_and_the_51x_ratio():
    maml, km, km_offsets = inner_count("maml"), inner_count("km"), inner_count("km_offsets")
    assert (maml, km, km_offsets) == (113_236, 1_948, 2_204)
    assert round(maml / km, 1) == 58.1
    assert round(maml / km_offsets, 1) == 51.4  # "< 51X" (KM Sec. IV-C)


def test_offsets_are_the_normalization_betas_only():
    cfg = compose_cfg(["experiment=table3/omniglot_20w1s", *VARIANTS["km_offsets"]])
    net = build_model(OmegaConf.to_container(cfg.model, resolve=True))
    offsets = inner_loop_names(net, ["norm_offset"])
    assert len(offsets) == 4 and all(n.endswith("bias") for n in offsets)
    assert sum(dict(net.named_parameters())[n].numel() for n in offsets) == 4 * 64


@pytest.mark.parametrize("task", ["miniimagenet_5w1s"])
def test_mini_imagenet_counts(task):
    assert (inner_count("maml", task), inner_count("km", task), inner_count("km_offsets", task)) == (32_901, 4_653, 4_781)


def test_meta_test_tasks_follow_mamls_reference_code():
    """mini-ImageNet: 15 query examples per class to meta-train, K at meta-test and 10 test
    steps; Omniglot 20-way: K query examples and 5 steps (Finn et al. 2017 Sec. 5.2; cbfinn/maml main.py)."""
    for task, shots, query, test_steps in [("miniimagenet_5w1s", 1, 15, 10), ("miniimagenet_5w5s", 5, 15, 10),
                                            ("omniglot_20w1s", 1, 1, 5), ("omniglot_20w5s", 5, 5, 5)]:
        cfg = compose_cfg([f"experiment=table3/{task}"])
        assert (cfg.meta.shots, cfg.meta.query, cfg.meta.test_inner_steps) == (shots, query, test_steps)
        assert cfg.dataset.datamodule.test_query == shots


def test_meta_test_tasks_use_test_query_examples_per_class():
    pytest.importorskip("learn2learn")
    from kmexp.data.fewshot import GlyphsFewShotDataModule

    dm = GlyphsFewShotDataModule(split=(10, 5, 5), ways=5, shots=2, query=3, test_query=1, meta_batch_size=2,
                                 iterations_per_epoch=1, num_val_tasks=2, num_test_tasks=2)
    dm.setup()
    assert next(iter(dm.train_dataloader()))["query_x"].shape[1] == 5 * 3
    assert next(iter(dm.val_dataloader()))["query_x"].shape[1] == 5 * 1
    assert next(iter(dm.test_dataloader()))["query_x"].shape[1] == 5 * 1
