"""The dataset: names.txt, its vocabulary, the lecture's split, and context windows.

Where names.txt comes from, first match wins:
1. a path given to `load_words(path)`;
2. the file that the environment variable MAKEMORE_NAMES names (any names file: an instructor's
   private set, the course's copy);
3. names.txt in the cache folder, fetched from upstream on first use; its sha256 is verified. The
   folder is $MAKEMORE_CACHE if set, else the user's cache folder (cache_dir()): outside the
   package, so an installed package needs no write access to itself.
"""

from __future__ import annotations

import hashlib
import os
import random
import string
import tempfile
import urllib.request
from pathlib import Path

import platformdirs
import torch
from torch import Tensor

from .edition import is_student
from .errors import ConfigError, UserError
from .loop import IGNORE  # the target of a padding position: cross-entropy skips it

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
NAMES_ENV = "MAKEMORE_NAMES"
CACHE_ENV = "MAKEMORE_CACHE"

CHARS = "." + string.ascii_lowercase  # '.' (index 0) marks both the start and the end of a name
STOI = {ch: i for i, ch in enumerate(CHARS)}
ITOS = dict(enumerate(CHARS))
VOCAB_SIZE = len(CHARS)  # 27
SPLITS = ("train", "val") if is_student() else ("train", "val", "test")  # students never see the test split


class DataError(UserError):
    """The names file is missing, corrupt, or not a list of a..z names."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_names(dest: Path, url: str = NAMES_URL, expected_sha256: str = NAMES_SHA256) -> Path:
    """Download names.txt to `dest`, verifying its checksum before it lands there."""
    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except OSError as err:
        raise DataError(
            f"names.txt is not in the cache folder {dest.parent}/ and could not be fetched from {url} ({err}).\n"
            f"Either connect to the internet and run again (it is fetched once, then kept there; set {CACHE_ENV}\n"
            f"to use another folder), or point {NAMES_ENV} at a copy: export {NAMES_ENV}=/path/to/names.txt"
        ) from err
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected_sha256:
        raise DataError(f"the file fetched from {url} has sha256 {digest}, expected {expected_sha256}; "
                        f"nothing was saved. Try again, or set {NAMES_ENV} to a copy you trust.")
    try:  # the cache folder lies outside the project: it may be read-only, or a file
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:  # atomic: no half-written file
            tmp.write(payload)
        os.replace(tmp.name, dest)
    except OSError as err:
        raise DataError(f"names.txt was fetched but cannot be saved in the cache folder {dest.parent}/ ({err}). "
                        f"Set {CACHE_ENV} to a folder you can write, or {NAMES_ENV} to a copy of names.txt.") from err
    return dest


def cache_dir() -> Path:
    """Where the fetched names.txt is kept: $MAKEMORE_CACHE (CI, offline machines, a shared copy),
    else the user's cache folder, e.g. ~/.cache/makemore-wavenet on Linux."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("makemore-wavenet"))


def names_path(data_dir: Path | None = None, url: str = NAMES_URL) -> Path:
    """The names file to read: $MAKEMORE_NAMES if set, else names.txt in `data_dir` (default:
    cache_dir()), fetched on first use and verified."""
    data_dir = Path(data_dir) if data_dir is not None else cache_dir()  # read now: the env var may change
    if os.environ.get(NAMES_ENV):
        path = Path(os.environ[NAMES_ENV]).expanduser()
        if not path.is_file():
            raise DataError(f"{NAMES_ENV} names {path}, which is not a file. Fix the path, or unset "
                            f"{NAMES_ENV} to fetch names.txt into the cache folder {data_dir}/.")
        return path
    path = data_dir / "names.txt"
    if not path.exists():
        return fetch_names(path, url)
    if (digest := sha256(path)) != NAMES_SHA256:
        raise DataError(f"{path} has sha256 {digest}, expected {NAMES_SHA256}: the file is corrupt or "
                        f"not the course's names.txt. Delete it to fetch it again, or set {NAMES_ENV} "
                        f"to use another names file on purpose.")
    return path


def parse_words(text: str, source: str = "names file") -> list[str]:
    """One name a line, a..z only; blank lines are skipped. Anything else is an error."""
    words = []
    for lineno, line in enumerate(text.splitlines(), 1):
        word = line.strip()
        bad = sorted(set(word) - set(string.ascii_lowercase))
        if bad:
            raise DataError(f"{source}, line {lineno}: {word!r} has characters outside a..z: {bad}. "
                            f"The vocabulary is fixed ('.' and a..z); clean the file rather than change it.")
        if word:
            words.append(word)
    if not words:
        raise DataError(f"{source} holds no names: it is empty.")
    return words


def load_words(path: str | Path | None = None) -> list[str]:
    path = Path(path) if path is not None else names_path()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err}).") from err
    return parse_words(text, source=str(path))


def split_words(words: list[str], seed: int = 42) -> dict[str, list[str]]:
    """The lecture's split: `random.seed(42); random.shuffle(words)`, then 80% / 10% / 10%."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    parts = {"train": words[:n1], "val": words[n1:n2], "test": words[n2:]}
    return {split: parts[split] for split in SPLITS}


def build_dataset(words: list[str], block_size: int) -> tuple[Tensor, Tensor]:
    """Every (context, next character) pair: X (N, block_size) int64, Y (N,) int64."""
    if block_size < 1:
        raise ConfigError(f"block_size must be at least 1, got {block_size}")
    X, Y = [], []
    # BEGIN EXERCISE 3.1
    for w in words:
        context = [0] * block_size  # start with '.' padding
        for ch in w + ".":
            ix = STOI[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append
    # END EXERCISE 3.1
    return torch.tensor(X, dtype=torch.long).view(-1, block_size), torch.tensor(Y, dtype=torch.long)


def build_names(words: list[str], block_size: int) -> tuple[Tensor, Tensor]:
    """Whole names for a model that predicts at every position (stage 7 on): X (N, block_size + L)
    is each name after block_size '.'s, right-padded with '.'; Y (N, L + 1) is each position's next
    character, the closing '.' included, right-padded with IGNORE. L is the longest name. A model
    whose receptive field is block_size maps X to one prediction per column of Y: the prediction
    for Y[:, t] sees X[:, t : t + block_size], the same window as build_dataset's example."""
    if block_size < 1:
        raise ConfigError(f"block_size must be at least 1, got {block_size}")
    longest = max((len(w) for w in words), default=0)
    X = torch.zeros(len(words), block_size + longest, dtype=torch.long)
    Y = torch.full((len(words), longest + 1), IGNORE, dtype=torch.long)
    for i, w in enumerate(words):
        ix = [STOI[ch] for ch in w]
        X[i, block_size:block_size + len(ix)] = torch.tensor(ix, dtype=torch.long)
        Y[i, :len(ix) + 1] = torch.tensor(ix + [0], dtype=torch.long)
    return X, Y


def real_positions(X: Tensor, block_size: int) -> Tensor:
    """(N, T) bool: which columns of whole names (build_names' X) end a real window: the first
    block_size '.'s and every letter, not the padding after a name's end."""
    real = X != 0
    real[:, :block_size] = True
    return real


Splits = dict[str, tuple[Tensor, Tensor]]  # {"train": (X, Y), "val": (X, Y), ...}


def load_splits(block_size: int, path: str | Path | None = None, seed: int = 42, device=None,
                whole_names: bool = False) -> Splits:
    """Every split, {split: (X, Y)}, on `device`: context windows (build_dataset), or whole names
    (build_names) for models that predict at every position."""
    words = split_words(load_words(path), seed)
    build = build_names if whole_names else build_dataset
    splits = {}
    for split in SPLITS:
        X, Y = build(words[split], block_size)
        splits[split] = (X.to(device), Y.to(device))
    return splits


def decode(ix: list[int]) -> str:
    return "".join(ITOS[i] for i in ix)
