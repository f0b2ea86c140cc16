"""Few-shot task data for meta-learning (KM Sec. IV-C, Table III), via learn2learn.

A *task* is an N-way problem: N classes drawn from one split's classes, K support
("shots") and Q query examples per class, labels 0..N-1 assigned at random. The
datamodules yield batches of tasks (``meta_batch_size`` per batch) as dicts of stacked
tensors ``support_x (B, N*K, C, H, W)``, ``support_y (B, N*K)``, ``query_x``, ``query_y``,
for :class:`kmexp.lit.fewshot.FewShotModule` (``lightning_module=fewshot``).

Tasks come from learn2learn: a ``MetaDataset`` per split and a ``Taskset`` with the
``NWays``, ``KShots``, ``LoadData`` and ``RemapLabels`` task transforms. Around it:

- meta-training draws a fresh task per index (``iterations_per_epoch`` batches an epoch);
  meta-validation and meta-test use fixed task lists: task i is drawn with Python's
  ``random`` seeded by ``(task_seed, split, i)``, so the 600 test tasks are the same for
  every method, seed and access order (MAML's evaluation also fixes its test seed);
- Omniglot's augmentation (Finn et al. 2017 Sec. 5.2, after Santoro et al. 2016): each
  class of a task is rotated by a random multiple of 90 degrees, an exact ``rot90``.
  learn2learn 0.2.0's ``RandomClassRotation`` is not used: its per-sample lambda closes
  over the loop variable ``rotation``, so every image of a task gets the rotation drawn
  for the last class;
- class splits are fixed by class *name* and ``split_seed``, not by learn2learn's global
  ``random.shuffle`` over class ids (those follow ``os.listdir`` order, which differs
  between file systems).

Datasets:

- :class:`GlyphsFewShotDataModule`: bundled and offline (:mod:`kmexp.data.glyphs`),
  100 generated classes split 64 / 16 / 20 like mini-ImageNet.
- :class:`OmniglotFewShotDataModule`: 1,623 characters (torchvision's ``omniglot-py``
  layout, both ``images_background`` and ``images_evaluation``), split 1100 / 100 / 423
  as learn2learn's benchmark, 28x28 (Lanczos), ``1 - x`` so strokes are 1.
- :class:`MiniImageNetFewShotDataModule`: learn2learn's pickles
  ``mini-imagenet-cache-{train,validation,test}.pkl`` (64 / 16 / 20 classes of 600
  84x84 images, Ravi & Larochelle's split), scaled to [0, 1].
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kmexp.data.base import default_data_root
from kmexp.distributed import eval_sampler
from kmexp.errors import ConfigError, DatasetNotFoundError

SPLITS = ("train", "validation", "test")


def _learn2learn():
    try:
        import learn2learn
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(
            f"few-shot data needs learn2learn 0.2.0 ({e}); install it with "
            "`bash scripts/install_learn2learn.sh .venv/bin/python` (make setup does)"
        ) from e
    return learn2learn


@contextmanager
def seeded_python_random(seed: int):
    """Run a block with Python's global ``random`` seeded (learn2learn samples with it),
    then restore the previous state so the training stream is unaffected."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def split_support_query(x: torch.Tensor, y: torch.Tensor, ways: int, shots: int, query: int):
    """Per class, the first ``shots`` examples are support and the next ``query`` are query.

    ``y`` holds labels 0..ways-1 with shots + query examples each, in any order.
    """
    per_class = shots + query
    if y.numel() != ways * per_class or torch.bincount(y, minlength=ways).tolist() != [per_class] * ways:
        raise ValueError(f"a task must hold {per_class} examples of each of {ways} labels, got {y.tolist()}")
    order = torch.argsort(y, stable=True)
    x = x[order].reshape(ways, per_class, *x.shape[1:])
    y = y[order].reshape(ways, per_class)
    return (
        x[:, :shots].reshape(ways * shots, *x.shape[2:]), y[:, :shots].reshape(-1),
        x[:, shots:].reshape(ways * query, *x.shape[2:]), y[:, shots:].reshape(-1),
    )


def rotate_classes(x: torch.Tensor, y: torch.Tensor, ways: int) -> torch.Tensor:
    """Rotate all images of each class by its own random multiple of 90 degrees."""
    x = x.clone()
    for c in range(ways):
        k = random.randrange(4)
        if k:
            idx = y == c
            x[idx] = torch.rot90(x[idx], k, dims=(-2, -1))
    return x


def labels_to_indices(labels) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        out.setdefault(int(c), []).append(i)
    return out


class Episodes(Dataset):
    """Few-shot tasks from one split, as a map-style dataset of ``length`` tasks.

    Args:
        meta_dataset: a learn2learn ``MetaDataset`` of the split.
        ways, shots, query: N, K and Q of each task.
        length: tasks per epoch (training) or the number of fixed tasks (evaluation).
        fixed_seed: ``None`` = draw a fresh task at every access (meta-training);
            an int = task i is always the same, drawn with ``random`` seeded by
            ``fixed_seed + i``.
        rotate: rotate each class by a random multiple of 90 degrees (Omniglot).
    """

    def __init__(self, meta_dataset, ways: int, shots: int, query: int, length: int,
                 fixed_seed: int | None = None, rotate: bool = False):
        l2l = _learn2learn()
        num_classes = len(meta_dataset.labels)
        if num_classes < ways:
            raise ConfigError(f"a {ways}-way task needs {ways} classes, but this split has {num_classes}")
        fewest = min(len(v) for v in meta_dataset.labels_to_indices.values())
        if fewest < shots + query:
            raise ConfigError(
                f"shots + query = {shots + query} examples per class, but a class of this split has only {fewest}"
            )
        transforms = [
            l2l.data.transforms.NWays(meta_dataset, ways),
            l2l.data.transforms.KShots(meta_dataset, shots + query),
            l2l.data.transforms.LoadData(meta_dataset),
            l2l.data.transforms.RemapLabels(meta_dataset),
        ]
        self.taskset = l2l.data.Taskset(meta_dataset, task_transforms=transforms, num_tasks=-1)
        self.ways, self.shots, self.query = ways, shots, query
        self.length = length
        self.fixed_seed = fixed_seed
        self.rotate = rotate

    def __len__(self) -> int:
        return self.length

    def _draw(self) -> dict[str, torch.Tensor]:
        x, y = self.taskset.sample()
        y = torch.as_tensor(y, dtype=torch.long)
        if self.rotate:
            x = rotate_classes(x, y, self.ways)
        sx, sy, qx, qy = split_support_query(x, y, self.ways, self.shots, self.query)
        return {"support_x": sx, "support_y": sy, "query_x": qx, "query_y": qy}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index >= self.length:
            raise IndexError(index)
        if self.fixed_seed is None:
            return self._draw()
        with seeded_python_random(self.fixed_seed + index):
            return self._draw()


class FewShotDataModule(pl.LightningDataModule):
    """Batches of few-shot tasks; subclasses implement :meth:`meta_datasets`.

    Args:
        ways, shots, query: N-way K-shot tasks with Q query examples per class.
        test_query: query examples per class of the meta-validation / meta-test tasks
            (``None`` = ``query``). MAML's reference code evaluates with K (main.py, ``--train=False``).
        meta_batch_size: tasks per outer-loop step (the global meta-batch); under DDP it is
            split across the devices (kmexp.distributed), each rank drawing its own tasks.
        iterations_per_epoch: meta-training batches per Lightning epoch.
        num_val_tasks, num_test_tasks: sizes of the fixed meta-validation / meta-test task lists
            (MAML reports the mean and 95% interval over 600 test tasks).
        task_seed: seed of the fixed task lists (independent of the training ``seed``).
        rotate: Omniglot's 90-degree class rotations, in every split.
        root: data folder (default ``$KMEXP_DATA`` or ``./data``).
        download: let learn2learn / torchvision download missing data.
        num_workers: DataLoader workers (tasks are assembled in the workers).
    """

    name = "fewshot"
    episodic = True

    def __init__(self, ways: int = 5, shots: int = 1, query: int = 15, meta_batch_size: int = 4,
                 iterations_per_epoch: int = 100, num_val_tasks: int = 100, num_test_tasks: int = 600,
                 task_seed: int = 0, rotate: bool = False, root: str | None = None, download: bool = False,
                 num_workers: int = 0, eval_meta_batch_size: int | None = None, test_query: int | None = None):
        super().__init__()
        for key, value in (("ways", ways), ("shots", shots), ("query", query), ("meta_batch_size", meta_batch_size),
                           ("iterations_per_epoch", iterations_per_epoch), ("num_test_tasks", num_test_tasks)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"meta.{key}={value!r} must be a positive integer")
        self.ways, self.shots, self.query = ways, shots, query
        self.test_query = query if test_query is None else test_query
        if not isinstance(self.test_query, int) or self.test_query < 1:
            raise ConfigError(f"meta.test_query={test_query!r} must be a positive integer")
        self.meta_batch_size = meta_batch_size
        self.eval_meta_batch_size = eval_meta_batch_size or meta_batch_size
        self.iterations_per_epoch = iterations_per_epoch
        self.num_val_tasks = num_val_tasks
        self.num_test_tasks = num_test_tasks
        self.task_seed = task_seed
        self.rotate = rotate
        self.root = Path(root) if root else default_data_root()
        self.download = download
        self.num_workers = num_workers
        self._episodes: dict[str, Episodes] | None = None

    def meta_datasets(self) -> tuple:
        """learn2learn ``MetaDataset`` of the meta-train, meta-validation and meta-test classes."""
        raise NotImplementedError

    def missing(self, what: str, expected: Path, how: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.name}: {what} not found at {expected}. {how} "
            f"(or point dataset.datamodule.root / $KMEXP_DATA at a local copy)"
        )

    def setup(self, stage: str | None = None) -> None:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        if module is not None and not getattr(module, "episodic", False):
            raise ConfigError(f"dataset {self.name!r} yields few-shot tasks: run it with lightning_module=fewshot")
        self._seed_rank_apart()
        if self._episodes is not None:
            return
        train, val, test = self.meta_datasets()
        # meta_batch_size is per device here (kmexp.distributed): DDP's sampler hands each rank
        # 1/world of the training tasks, so an epoch keeps iterations_per_epoch steps
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        # distinct seeds per split: no validation task doubles as a test task index
        self._episodes = {
            "train": Episodes(train, self.ways, self.shots, self.query,
                              self.iterations_per_epoch * self.meta_batch_size * world, None, self.rotate),
            "validation": Episodes(val, self.ways, self.shots, self.test_query, max(self.num_val_tasks, 1),
                                   self.task_seed * 1_000_003 + 500_000, self.rotate),
            "test": Episodes(test, self.ways, self.shots, self.test_query, self.num_test_tasks,
                             self.task_seed * 1_000_003, self.rotate),
        }

    def _seed_rank_apart(self) -> None:
        """Under DDP every rank is seeded alike, so without this each would draw the same
        meta-training tasks (learn2learn samples with Python's ``random``) and the extra
        devices would add no tasks. DataLoader workers need nothing: Lightning's
        ``seed_everything(workers=True)`` already seeds them by rank."""
        trainer = self.trainer
        if trainer is None or getattr(trainer, "world_size", 1) <= 1 or self.num_workers > 0:
            return
        random.seed(f"{torch.initial_seed()}/rank{trainer.global_rank}")

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        sampler = None if split == "train" else eval_sampler(self._episodes[split])  # DDP: no repeated tasks
        return DataLoader(self._episodes[split], batch_size=batch_size, shuffle=False, drop_last=False, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.meta_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_meta_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_meta_batch_size)


def _split_by_name(names: list[str], sizes: list[int], seed: int) -> list[list[int]]:
    """Indices into ``names`` for each split: names sorted, shuffled with ``seed``, cut by ``sizes``."""
    if sum(sizes) != len(names):
        raise ConfigError(f"class split {list(sizes)} sums to {sum(sizes)}, but there are {len(names)} classes")
    order = sorted(range(len(names)), key=lambda i: names[i])
    random.Random(seed).shuffle(order)
    cuts = [0]
    for s in sizes:
        cuts.append(cuts[-1] + s)
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class GlyphsFewShotDataModule(FewShotDataModule):
    """Bundled offline few-shot data: generated glyph classes (:mod:`kmexp.data.glyphs`).

    ``split`` gives the number of meta-train / meta-validation / meta-test classes;
    classes never cross splits.
    """

    name = "fewshot_glyphs"

    def __init__(self, split: tuple[int, int, int] = (64, 16, 20), samples_per_class: int = 20,
                 image_size: int = 28, glyph_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.split = list(split)
        self.samples_per_class = samples_per_class
        self.image_size = image_size
        self.glyph_seed = glyph_seed

    def meta_datasets(self):
        from kmexp.data.glyphs import make_glyphs

        l2l = _learn2learn()
        x, y = make_glyphs(sum(self.split), self.samples_per_class, self.image_size, self.glyph_seed)
        out, start = [], 0
        for size in self.split:
            keep = (y >= start) & (y < start + size)
            xs, ys = x[keep], y[keep]
            out.append(l2l.data.MetaDataset(TensorDataset(xs, ys), labels_to_indices=labels_to_indices(ys.tolist())))
            start += size
        return tuple(out)


def _invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x  # Omniglot's black strokes on white -> strokes 1 on a 0 background


def _scale_to_unit(x: torch.Tensor) -> torch.Tensor:
    return x / 255.0


class OmniglotFewShotDataModule(FewShotDataModule):
    """Omniglot (Lake et al. 2015) through learn2learn's ``FullOmniglot`` (torchvision layout).

    Expected: ``<root>/omniglot-py/images_background/<alphabet>/<character>/*.png`` and the
    same under ``images_evaluation``, next to torchvision's ``images_background.zip`` and
    ``images_evaluation.zip`` (torchvision checks those two archives' MD5 before reading).
    ``preload`` decodes and resizes the 32,460 images once (learn2learn's ``OnDeviceDataset``)
    instead of for every task.
    """

    name = "omniglot"

    def __init__(self, split: tuple[int, int, int] = (1100, 100, 423), split_seed: int = 0, image_size: int = 28,
                 rotate: bool = True, preload: bool = True, **kwargs):
        super().__init__(rotate=rotate, **kwargs)
        self.split = list(split)
        self.split_seed = split_seed
        self.image_size = image_size
        self.preload = preload

    def _full_omniglot(self):
        from torchvision import transforms

        l2l = _learn2learn()
        folder = self.root / "omniglot-py"
        how = (f"Download images_background.zip and images_evaluation.zip from "
               f"https://github.com/brendenlake/omniglot (python/) into {folder} and unzip them there, keeping "
               f"the zips (torchvision checks their MD5)")
        how += ("" if self.download else ", or run with dataset.datamodule.download=true on a machine with internet")
        if not self.download and not all((folder / f"images_{s}").is_dir() for s in ("background", "evaluation")):
            raise self.missing("the Omniglot images (images_background/ and images_evaluation/)", folder, how)
        transform = transforms.Compose([
            transforms.Resize(self.image_size, interpolation=transforms.InterpolationMode.LANCZOS),
            transforms.ToTensor(),
            _invert,
        ])
        try:
            return l2l.vision.datasets.FullOmniglot(root=str(self.root), transform=transform, download=self.download)
        except (RuntimeError, OSError) as e:  # torchvision: missing/corrupted zip, or no network
            raise self.missing(f"the Omniglot archives ({e.__class__.__name__}: {e})", folder, how) from e

    def meta_datasets(self):
        l2l = _learn2learn()
        omniglot = self._full_omniglot()
        background, evaluation = omniglot.dataset.datasets
        offset = len(background._characters)  # FullOmniglot shifts evaluation labels by this
        names = [f"images_background/{c}" for c in background._characters]
        names += [f"images_evaluation/{c}" for c in evaluation._characters]
        labels = [c for _, c in background._flat_character_images]
        labels += [c + offset for _, c in evaluation._flat_character_images]
        data = l2l.data.OnDeviceDataset(omniglot) if self.preload else omniglot
        # labels from the file lists: no image is decoded to index the dataset
        meta = l2l.data.MetaDataset(data, labels_to_indices=labels_to_indices(labels))
        return tuple(l2l.data.FilteredMetaDataset(meta, labels=sorted(ids))
                     for ids in _split_by_name(names, self.split, self.split_seed))


class MiniImageNetFewShotDataModule(FewShotDataModule):
    """mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split) via learn2learn's
    ``MiniImagenet``: ``<root>/mini-imagenet-cache-{train,validation,test}.pkl``, each a
    pickled dict with ``image_data`` (N, 84, 84, 3) uint8 and ``class_dict`` (class -> indices).
    """

    name = "mini_imagenet"

    def meta_datasets(self):
        l2l = _learn2learn()
        files = [self.root / f"mini-imagenet-cache-{s}.pkl" for s in SPLITS]
        if not self.download and not all(f.is_file() for f in files):
            absent = ", ".join(f.name for f in files if not f.is_file())
            raise self.missing(
                f"the mini-ImageNet pickles ({absent})", self.root,
                "Put learn2learn's mini-imagenet-cache-{train,validation,test}.pkl there "
                "(https://zenodo.org/record/7978538), or run with dataset.datamodule.download=true "
                "on a machine with internet",
            )
        out = []
        for split in SPLITS:
            try:
                ds = l2l.vision.datasets.MiniImagenet(root=str(self.root), mode=split, transform=_scale_to_unit,
                                                      download=self.download)
            except (OSError, EOFError, ValueError) as e:
                raise self.missing(f"a readable mini-imagenet-cache-{split}.pkl ({e.__class__.__name__}: {e})",
                                   self.root, "Re-download the pickle") from e
            out.append(l2l.data.MetaDataset(ds, labels_to_indices=labels_to_indices(ds.y.tolist())))
        return tuple(out)
