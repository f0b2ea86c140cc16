"""`make setup` on a disk too full for the .venv stops before installing anything, with one clear line."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_setup_refuses_a_disk_without_room_for_the_venv(tmp_path):
    for name in ("Makefile", "requirements.txt", "pyproject.toml", "scripts/install_learn2learn.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    # PYTHON=false: were the check missing, venv creation would fail at once instead of installing
    done = subprocess.run(
        ["make", "setup", "PYTHON=false", "SETUP_MIN_FREE_MB=100000000000"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "error: setup needs about 100000000000 MB free here for .venv" in done.stdout
    assert "MB free in /" in done.stdout
    assert not (tmp_path / ".venv").exists()
