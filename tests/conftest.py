"""Tests read the course's copy of names.txt in ../shared/data/ (beside the repository) unless
MAKEMORE_NAMES names another; without either, the project fetches it as a user's run would."""

import os
from pathlib import Path

import pytest

from makemore_wavenet.shared.data import NAMES_ENV, load_splits

SHARED_NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"

if not os.environ.get(NAMES_ENV) and SHARED_NAMES.is_file():
    os.environ[NAMES_ENV] = str(SHARED_NAMES)


@pytest.fixture(scope="session")
def splits_by_block():
    """load_splits(block_size), built once per block size for the whole session."""
    cache = {}

    def get(block_size: int):
        if block_size not in cache:
            cache[block_size] = load_splits(block_size)
        return cache[block_size]

    return get
