"""Tiny copies of the four transfer datasets in their real on-disk layouts.

Each writer puts a few small JPEGs plus the dataset's real annotation files (text
lists, MATLAB .mat files, JSON) under ``root`` exactly where torchvision looks, and
returns the labels (0-based) torchvision should read for every split, in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 36)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_aircraft(root: Path, counts: dict[str, int] | None = None) -> dict[str, list[int]]:
    """fgvc-aircraft-2013b/data/{variants.txt, images_variant_<split>.txt, images/<id>.jpg}."""
    counts = counts or {"train": 3, "val": 2, "test": 3}
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    variants = [f"Model {i:03d}-{i % 7}00" for i in range(100)]  # names contain spaces, like "Cessna 172"
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    labels, image_id = {}, 1000000
    for split in ("train", "val", "test"):
        lines, labels[split] = [], []
        for _ in range(counts[split]):
            image_id += 1
            label = (image_id * 37) % 100
            write_jpeg(data / "images" / f"{image_id}.jpg", image_id)
            lines.append(f"{image_id} {variants[label]}")
            labels[split].append(label)
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    trainval = (data / "images_variant_train.txt").read_text() + (data / "images_variant_val.txt").read_text()
    (data / "images_variant_trainval.txt").write_text(trainval)
    labels["trainval"] = labels["train"] + labels["val"]
    return labels


def _annotations(fnames: list[str], classes_1based: list[int]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    rec = np.zeros((1, len(fnames)), dtype=[(f, object) for f in fields])
    for i, (fname, c) in enumerate(zip(fnames, classes_1based, strict=True)):
        rec[0, i] = (np.uint8(1), np.uint8(2), np.uint8(30), np.uint8(20), np.uint8(c), fname)
    return rec


def write_cars(root: Path, counts: dict[str, int] | None = None) -> dict[str, list[int]]:
    """stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/,
    cars_test_annos_withlabels.mat, cars_test/} as the original devkit ships them."""
    counts = counts or {"train": 4, "test": 3}
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Make{i} Model {2000 + i % 13}" for i in range(196)]
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    labels = {}
    for split, folder, annos in (("train", "cars_train", base / "devkit" / "cars_train_annos.mat"),
                                 ("test", "cars_test", base / "cars_test_annos_withlabels.mat")):
        fnames, classes = [], []
        for i in range(counts[split]):
            fname = f"{i + 1:05d}.jpg"
            write_jpeg(base / folder / fname, 1000 + i + (500 if split == "test" else 0))
            fnames.append(fname)
            classes.append(1 + (i * 53 + len(split)) % 196)
        savemat(annos, {"annotations": _annotations(fnames, classes)})
        labels[split] = [c - 1 for c in classes]
    return labels


def write_flowers(root: Path, counts: dict[str, int] | None = None) -> dict[str, list[int]]:
    """flowers-102/{jpg/image_00001.jpg, imagelabels.mat, setid.mat} (1-based ids and labels)."""
    counts = counts or {"train": 3, "val": 2, "test": 3}
    base = root / "flowers-102"
    n = sum(counts.values())
    all_labels = [1 + (i * 29) % 102 for i in range(n)]
    for i in range(n):
        write_jpeg(base / "jpg" / f"image_{i + 1:05d}.jpg", 500 + i)
    savemat(base / "imagelabels.mat", {"labels": np.array([all_labels], dtype=np.uint8)})
    ids, start, labels = {}, 1, {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ids[key] = np.array([list(range(start, start + counts[split]))], dtype=np.uint16)
        labels[split] = [all_labels[j - 1] - 1 for j in range(start, start + counts[split])]
        start += counts[split]
    savemat(base / "setid.mat", ids)
    return labels


def write_food(root: Path, counts: dict[str, int] | None = None) -> dict[str, list[int]]:
    """food-101/{images/<class>/<id>.jpg, meta/train.json, meta/test.json}; all 101 class keys."""
    counts = counts or {"train": 4, "test": 2}
    base = root / "food-101"
    (base / "meta").mkdir(parents=True, exist_ok=True)
    classes = sorted(f"dish_{i:03d}" for i in range(101))
    labels, image_id = {}, 100
    for split in ("train", "test"):
        meta = {c: [] for c in classes}
        for i in range(counts[split]):
            image_id += 1
            c = classes[(i * 41 + image_id) % 101]
            write_jpeg(base / "images" / c / f"{image_id}.jpg", image_id)
            meta[c].append(f"{c}/{image_id}")
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
        labels[split] = [classes.index(c) for c in classes for _ in meta[c]]  # torchvision reads class by class
    return labels


WRITERS = {"aircraft": write_aircraft, "cars": write_cars, "flowers": write_flowers, "food": write_food}
