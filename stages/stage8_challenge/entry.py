"""Challenge entries: a TOML file per entry, with a [model] table (WaveNetConfig's fields) and a
[train] table (TrainConfig's). What an entry leaves out is the default; block_size follows from
the dilations. The course's own: the stage's entry.toml (the best), entries/ (stage 7, the ablations).
The stage's CONFIG and RECIPE are its own entry's: the model `makemore train 8` trains."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from makemore_wavenet.shared.config import RENAMED, TrainConfig
from makemore_wavenet.shared.errors import ConfigError

from .model import WaveNetConfig, build_model  # noqa: F401  (the stage's model, beside its CONFIG)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENTRIES = Path(__file__).with_name("entries")
ENTRY = Path(__file__).with_name("entry.toml")  # the stage's own entry


class EntryError(ConfigError):
    """An entry file that cannot be read, or that names a setting no config has."""


def load_entry(path: str | Path) -> tuple[WaveNetConfig, TrainConfig]:
    path = Path(path)
    if not path.is_file():
        raise EntryError(f"no {path.name} in {path.parent}: an entry is a TOML file. Start from a copy of one of "
                         f"stages/{ENTRIES.parent.name}/entries/*.toml")
    try:
        entry = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise EntryError(f"{path}: not a readable TOML entry ({err})") from err
    tables = {name: entry.get(name, {}) for name in ("model", "train")}
    if set(entry) - set(tables) or not all(isinstance(t, dict) for t in tables.values()):
        raise EntryError(f"{path}: an entry has a [model] and a [train] table, and nothing else; got {sorted(entry)}")
    tables["train"] = {RENAMED.get(key, key): value for key, value in tables["train"].items()}  # earlier names
    for name, cls in (("model", WaveNetConfig), ("train", TrainConfig)):
        settings = {f.name for f in fields(cls)}
        if (wrong := set(tables[name]) - settings):
            raise EntryError(f"{path}: [{name}] has no setting {', '.join(sorted(wrong))}; "
                             f"it takes {', '.join(sorted(settings))}")
    model = tables["model"]
    dilations = model.get("dilations", [])
    if not isinstance(dilations, list) or not all(isinstance(d, int) for d in dilations):
        raise EntryError(f"{path}: dilations must be a list of integers, got {dilations!r}")
    if "dilations" in model and "block_size" not in model:
        model = {**model, "block_size": 1 + sum(dilations)}
    try:
        return WaveNetConfig(**model), TrainConfig(**tables["train"])
    except (TypeError, ValueError) as err:  # a wrong type, a value out of range
        raise EntryError(f"{path}: {err}") from err


def entry_path(name: str | Path) -> Path:
    """An entry by file path, or by the name of one of the course's: "entry" (the stage's own),
    "stage7", "ablations/no_gates", ..."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise EntryError(f"no entry file {path}")
        return path
    course = ENTRY if name == "entry" else ENTRIES / f"{name}.toml"
    if not course.is_file():
        names = sorted(str(p.relative_to(ENTRIES).with_suffix("")) for p in ENTRIES.rglob("*.toml"))
        known = ", ".join(["entry", *names])
        raise EntryError(f"no entry {name!r}: give a .toml file, or one of the course's entries: {known}")
    return course


CONFIG, RECIPE = load_entry(ENTRY)
