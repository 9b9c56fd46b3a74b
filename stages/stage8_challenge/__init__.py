"""Stage 8: the challenge. The WaveNet paper's gated units, residual and skip connections on stage
7's convolutions; every model and recipe is an entry, a TOML file (entry.py)."""

from pathlib import Path

from .entry import ENTRIES, EntryError, entry_path, load_entry
from .model import WaveNetConfig, build_model

ENTRY = Path(__file__).with_name("entry.toml")  # the stage's own entry: the one `makemore train 8` trains
CONFIG, RECIPE = load_entry(ENTRY)
LECTURE = {"params": 76_579, "train": 1.769, "val": 1.993}  # stage 6's numbers: the loss to improve on

__all__ = ["CONFIG", "ENTRIES", "ENTRY", "EntryError", "LECTURE", "RECIPE", "WaveNetConfig", "build_model",
           "entry_path", "load_entry"]
