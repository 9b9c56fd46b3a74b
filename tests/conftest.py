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


@pytest.fixture(scope="session")
def splits_of_stage(splits_by_block):
    """The splits as stage n's model reads them (windows, or whole names from stage 7 on), cached."""
    from makemore_wavenet.stages import get_stage
    names = {}

    def get(n: int):
        c = get_stage(n).config
        if not c.whole_names:
            return splits_by_block(c.block_size)
        if c.block_size not in names:
            names[c.block_size] = load_splits(c.block_size, whole_names=True)
        return names[c.block_size]

    return get
