"""Few-shot task data (KM Sec. IV-C): the bundled glyphs, the episode structure, and the
learn2learn Omniglot / mini-ImageNet loaders on small files in their real on-disk formats."""

from __future__ import annotations

import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from kmexp.data.fewshot import (
    GlyphsFewShotDataModule,
    MiniImageNetFewShotDataModule,
    OmniglotFewShotDataModule,
    _split_by_name,
    rotate_classes,
    split_support_query,
)
from kmexp.data.glyphs import make_glyphs
from kmexp.errors import ConfigError, DatasetNotFoundError

pytest.importorskip("learn2learn")

EPISODE = dict(ways=5, shots=2, query=3, meta_batch_size=3, iterations_per_epoch=2, num_val_tasks=4, num_test_tasks=6)


def glyphs(**kwargs) -> GlyphsFewShotDataModule:
    dm = GlyphsFewShotDataModule(split=(10, 5, 5), **{**EPISODE, **kwargs})
    dm.setup()
    return dm


def check_task(batch: dict, tasks: int, ways: int, shots: int, query: int, image: tuple) -> None:
    assert batch["support_x"].shape == (tasks, ways * shots, *image)
    assert batch["query_x"].shape == (tasks, ways * query, *image)
    for t in range(tasks):
        assert batch["support_y"][t].tolist() == [c for c in range(ways) for _ in range(shots)]
        assert batch["query_y"][t].tolist() == [c for c in range(ways) for _ in range(query)]
        support, queries = batch["support_x"][t].flatten(1), batch["query_x"][t].flatten(1)
        assert not any(torch.equal(s, q) for s in support for q in queries)  # distinct examples


def test_glyph_classes_are_deterministic_and_independent_of_the_number_generated():
    x, y = make_glyphs(num_classes=6, samples_per_class=4)
    x2, _ = make_glyphs(num_classes=3, samples_per_class=4)
    assert x.shape == (24, 1, 28, 28) and y.tolist() == [c for c in range(6) for _ in range(4)]
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.mean()) > 0.02
    torch.testing.assert_close(x[:12], x2)
    assert not torch.equal(x[0], x[1])  # two drawings of a character differ
    within = (x[0] - x[1]).abs().mean()
    across = (x[0] - x[4]).abs().mean()
    assert within < across  # ... less than two characters do


def test_glyph_episodes_have_the_few_shot_structure_and_disjoint_class_splits():
    dm = glyphs()
    splits = [set(dm._episodes[s].taskset.dataset.labels) for s in ("train", "validation", "test")]
    assert [len(s) for s in splits] == [10, 5, 5]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader(), "test": dm.test_dataloader()}
    assert [len(loader) for loader in loaders.values()] == [2, 2, 2]
    for loader in loaders.values():
        check_task(next(iter(loader)), 3, 5, 2, 3, (1, 28, 28))


def test_meta_test_tasks_are_fixed_and_training_tasks_are_fresh():
    a, b = glyphs(), glyphs()
    random.seed(123)
    first = next(iter(a.test_dataloader()))
    random.seed(456)
    second = next(iter(b.test_dataloader()))
    assert all(torch.equal(first[k], second[k]) for k in first)
    other_seed = next(iter(glyphs(task_seed=1).test_dataloader()))
    assert not torch.equal(first["support_x"], other_seed["support_x"])
    train = a._episodes["train"]
    assert not torch.equal(train[0]["support_x"], train[0]["support_x"])
    state = random.getstate()
    a._episodes["test"][0]
    assert random.getstate() == state  # fixed tasks leave the training stream alone


def test_split_support_query_groups_by_label_in_any_order():
    y = torch.tensor([2, 0, 1, 2, 0, 1, 0, 1, 2])
    x = torch.arange(9).float()[:, None] * 10 + y[:, None]
    sx, sy, qx, qy = split_support_query(x, y, ways=3, shots=1, query=2)
    assert sy.tolist() == [0, 1, 2] and qy.tolist() == [0, 0, 1, 1, 2, 2]
    assert (sx[:, 0] % 10).tolist() == [0, 1, 2] and (qx[:, 0] % 10).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="3 examples of each of 3 labels"):
        split_support_query(x[:8], y[:8], ways=3, shots=1, query=2)


def test_each_class_gets_its_own_rotation():
    """Omniglot's augmentation: one multiple of 90 degrees per class (learn2learn 0.2.0's
    RandomClassRotation applies the last class's rotation to every image of a task)."""
    ways, per_class = 8, 3
    x = torch.zeros(ways * per_class, 1, 4, 4)
    x[:, 0, 0, 0] = 1  # a marker in the top-left corner
    y = torch.arange(ways).repeat_interleave(per_class)
    random.seed(0)
    rotated = rotate_classes(x, y, ways)
    corners = [tuple(torch.nonzero(img[0])[0].tolist()) for img in rotated]
    per_class_corners = [set(corners[c * per_class:(c + 1) * per_class]) for c in range(ways)]
    assert all(len(s) == 1 for s in per_class_corners)
    assert len(set.union(*per_class_corners)) > 1
    assert torch.equal(x[:, 0, 0, 0], torch.ones(ways * per_class))  # input untouched


def test_class_split_depends_on_names_not_on_listing_order():
    names = [f"images_background/alpha{i // 3}/character{i % 3:02d}" for i in range(12)]
    split = _split_by_name(names, [6, 3, 3], seed=0)
    shuffled = names[::-1]
    split2 = _split_by_name(shuffled, [6, 3, 3], seed=0)
    assert [sorted(names[i] for i in s) for s in split] == [sorted(shuffled[i] for i in s) for s in split2]
    assert sorted(i for s in split for i in s) == list(range(12))
    with pytest.raises(ConfigError, match="sums to 11"):
        _split_by_name(names, [6, 3, 2], seed=0)


def test_episodes_check_the_split_can_hold_a_task():
    with pytest.raises(ConfigError, match="needs 6 classes"):
        glyphs(ways=6)
    with pytest.raises(ConfigError, match="has only 20"):
        glyphs(shots=10, query=11)


def test_classification_module_is_refused():
    dm = GlyphsFewShotDataModule(split=(10, 5, 5), **EPISODE)
    dm.trainer = SimpleNamespace(lightning_module=object())
    with pytest.raises(ConfigError, match="lightning_module=fewshot"):
        dm.setup("fit")


def test_ddp_ranks_draw_different_meta_training_tasks():
    def first_task(rank: int, world_size: int) -> torch.Tensor:
        torch.manual_seed(0)
        random.seed(0)  # seed_everything seeds every rank alike
        dm = GlyphsFewShotDataModule(split=(10, 5, 5), **EPISODE)
        dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(episodic=True), world_size=world_size,
                                     global_rank=rank)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["support_x"]

    assert torch.equal(first_task(0, 1), first_task(0, 1))
    assert torch.equal(first_task(1, 2), first_task(1, 2))  # still reproducible per rank
    assert not torch.equal(first_task(0, 2), first_task(1, 2))


# ------------------------------------------------------------------ Omniglot (torchvision layout)
OMNIGLOT = {"images_background": {"Alphabet_A": 3, "Alphabet_B": 2}, "images_evaluation": {"Alphabet_C": 3}}


def write_omniglot(root, images_per_character=5):
    """torchvision's extracted layout: omniglot-py/images_*/<alphabet>/characterNN/<id>_<nn>.png,
    105x105 black strokes on white; each character draws a bar at its own row."""
    characters = []
    for folder, alphabets in OMNIGLOT.items():
        for alphabet, n in alphabets.items():
            for c in range(n):
                d = root / "omniglot-py" / folder / alphabet / f"character{c + 1:02d}"
                d.mkdir(parents=True)
                row = 10 + 10 * len(characters)
                for k in range(images_per_character):
                    img = np.full((105, 105), 255, dtype=np.uint8)
                    img[row:row + 8, 10 + 3 * k:90] = 0
                    Image.fromarray(img, mode="L").save(d / f"{len(characters):04d}_{k + 1:02d}.png")
                characters.append(row)
    return characters


@pytest.mark.parametrize("preload", [True, False])
def test_omniglot_loads_the_torchvision_layout_through_learn2learn(tmp_path, monkeypatch, preload):
    """The extracted folders are the real format; torchvision additionally verifies the MD5 of
    the two original zip archives before reading them, which no small test file can match, so
    only that check is bypassed here."""
    from torchvision.datasets import omniglot as tv_omniglot

    rows = write_omniglot(tmp_path)
    monkeypatch.setattr(tv_omniglot.Omniglot, "_check_integrity", lambda self: True)
    dm = OmniglotFewShotDataModule(root=str(tmp_path), download=False, split=(4, 2, 2), rotate=False, preload=preload,
                                   ways=2, shots=2, query=3, meta_batch_size=2, iterations_per_epoch=1,
                                   num_val_tasks=2, num_test_tasks=2)
    dm.setup()
    labels = [set(dm._episodes[s].taskset.dataset.labels) for s in ("train", "validation", "test")]
    assert [len(s) for s in labels] == [4, 2, 2] and set.union(*labels) == set(range(8))
    for loader in (dm.train_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        check_task(batch, 2, 2, 2, 3, (1, 28, 28))
        for t in range(2):
            for c in range(2):  # support and query of a label show the same character (bar row)
                images = torch.cat([batch["support_x"][t][batch["support_y"][t] == c],
                                    batch["query_x"][t][batch["query_y"][t] == c]])
                bar_rows = {int(img[0].mean(dim=1).argmax()) for img in images}
                assert len(bar_rows) == 1
                assert min(abs(next(iter(bar_rows)) - r * 28 / 105) for r in rows) < 3
        assert float(batch["support_x"].min()) >= 0 and float(batch["support_x"].median()) < 0.05  # 1 - x


def test_omniglot_missing_gives_one_clear_message(tmp_path):
    dm = OmniglotFewShotDataModule(root=str(tmp_path), download=False, **EPISODE)
    with pytest.raises(DatasetNotFoundError, match="omniglot-py") as e:
        dm.setup()
    assert str(tmp_path) in str(e.value)
    write_omniglot(tmp_path)  # folders but no zip archives: torchvision refuses them
    with pytest.raises(DatasetNotFoundError, match="Omniglot archives"):
        OmniglotFewShotDataModule(root=str(tmp_path), download=False, **EPISODE).setup()


# ------------------------------------------------------------------ mini-ImageNet (learn2learn pickles)
def write_mini_imagenet(root, classes=5, images=4):
    """learn2learn's mini-imagenet-cache-<split>.pkl: {"image_data": (N, 84, 84, 3) uint8,
    "class_dict": {wnid: [indices]}}; red = 10 * split + class and green = index trace every image."""
    for s, split in enumerate(("train", "validation", "test")):
        data = np.zeros((classes * images, 84, 84, 3), dtype=np.uint8)
        class_dict = {}
        for c in range(classes):
            idx = list(range(c * images, (c + 1) * images))
            data[idx, :, :, 0] = 10 * s + c
            data[idx, :, :, 1] = np.array(idx, dtype=np.uint8)[:, None, None]
            class_dict[f"n{s}{c:07d}"] = idx
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": class_dict}, f)


def test_mini_imagenet_loads_learn2learns_pickles(tmp_path):
    write_mini_imagenet(tmp_path)
    dm = MiniImageNetFewShotDataModule(root=str(tmp_path), download=False, ways=5, shots=1, query=3,
                                       meta_batch_size=2, iterations_per_epoch=1, num_val_tasks=2, num_test_tasks=2)
    dm.setup()
    for s, loader in enumerate((dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())):
        batch = next(iter(loader))
        check_task(batch, 2, 5, 1, 3, (3, 84, 84))
        red = torch.cat([batch["support_x"], batch["query_x"]], 1)[:, :, 0].mul(255).round()
        assert {int(v) // 10 for v in red.unique()} == {s}  # from the right pickle, scaled to [0, 1]
        for t in range(2):  # a label's support and query images come from one class
            for c in range(5):
                sup = batch["support_x"][t][batch["support_y"][t] == c][:, 0].unique()
                qry = batch["query_x"][t][batch["query_y"][t] == c][:, 0].unique()
                assert torch.equal(sup, qry) and sup.numel() == 1


def test_mini_imagenet_missing_names_the_pickles(tmp_path):
    write_mini_imagenet(tmp_path)
    (tmp_path / "mini-imagenet-cache-test.pkl").unlink()
    dm = MiniImageNetFewShotDataModule(root=str(tmp_path), download=False, **EPISODE)
    with pytest.raises(DatasetNotFoundError, match="mini-imagenet-cache-test.pkl") as e:
        dm.setup()
    assert "mini-imagenet-cache-train.pkl" not in str(e.value).split("(")[1].split(")")[0]
