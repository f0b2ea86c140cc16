"""Bytes per task (KM Sec. V): the 100-task storage reduction of TKM-2 on every transfer dataset.

``python -m kmexp.storage --transfer`` writes one real patch file per dataset's model (the
classifier has that dataset's classes; the sizes come from the architecture, not the weights)
and reports, per dataset and on average, the paper's ratio
N networks / (one base network + N patches).
"""

import json

import pytest
from safetensors import safe_open

from kmexp.patches import read_patch
from kmexp.reporting.storage import main, task_storage, transfer_datasets

# KM Table II: trainable parameters of TKM-2 (GroupNorm gamma/beta, 53 modulators, classifier)
TABLE2_TKM2_TRAINABLE = {"cars": 462_190}


def test_task_storage_is_the_papers_arithmetic():
    """Sec. V: 100 x 94 MB = 9400 MB vs 94 MB + 100 x 94 MB x 1.4% = 226 MB."""
    r = task_storage(94e6, 94e6 * 0.014, 100)
    assert r["storage/networks_bytes"] == pytest.approx(9400e6)
    assert r["storage/base_plus_patches_bytes"] == pytest.approx(225.6e6)
    assert r["storage/reduction"] == pytest.approx(9400 / 225.6)  # 41.7 (the paper rounds to "43X")


def test_the_transfer_datasets_are_table_ii_s():
    assert transfer_datasets() == ["aircraft", "cars", "flowers", "food"]


@pytest.mark.slow
def test_report_per_dataset_from_real_patch_files(tmp_path, capsys):
    patches, out = tmp_path / "patches", tmp_path / "storage.json"
    assert main(["--transfer", "--keep-patches", str(patches), "--json", str(out)]) == 0
    reports = json.loads(out.read_text())
    rows, average = reports[:-1], reports[-1]
    assert [r["dataset"] for r in rows] == transfer_datasets()
    for r in rows:
        path = patches / f"{r['dataset']}.safetensors"
        assert r["patch/bytes"] == path.stat().st_size  # the report is the file on disk
        header, tensors = read_patch(path)
        assert header["method"] == "km" and header["components"] == ["implicit", "explicit", "classifier"]
        assert sum(t.numel() for t in tensors.values()) == r["params/trainable"]  # GroupNorm: no running stats
        with safe_open(str(path), "pt") as f:
            assert len(list(f.keys())) == 1  # one packed float32 tensor
        assert 4 * r["params/trainable"] < r["patch/bytes"] <= 1.2 * 4 * r["params/trainable"]
        n, m, p = r["tasks"], r["model/bytes"], r["patch/bytes"]
        assert n == 100
        assert r["storage/networks_bytes"] == n * m
        assert r["storage/base_plus_patches_bytes"] == m + n * p
        assert r["storage/reduction"] == pytest.approx(n * m / (m + n * p), rel=1e-12)
        assert 93e6 < m < 97e6  # 23.5 M frozen ResNet-50 parameters + the classifier, float32
    for dataset, trainable in TABLE2_TKM2_TRAINABLE.items():
        assert next(r for r in rows if r["dataset"] == dataset)["params/trainable"] == trainable
    # more classes, bigger patch, smaller reduction: Cars (196 classes) is the lowest
    assert min(rows, key=lambda r: r["storage/reduction"])["dataset"] == "cars"
    mean_m = sum(r["model/bytes"] for r in rows) / len(rows)
    mean_p = sum(r["patch/bytes"] for r in rows) / len(rows)
    assert average["storage/reduction"] == pytest.approx(100 * mean_m / (mean_m + 100 * mean_p), rel=1e-12)
    assert 40 < average["storage/reduction"] < 46  # the paper: "a 43X memory reduction"
    printed = capsys.readouterr().out
    assert "| cars/tkm2 | km | cars | 462,190 |" in printed and f"{average['storage/reduction']:.1f}x |" in printed
