import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / ".." / "shared" / "data" / "knee-kl"   # read in place, never copied

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "train").is_dir():
        pytest.skip(f"test data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
