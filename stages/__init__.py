"""The six stages of the lecture and two beyond it, one package each, all with the same face.

A stage package has `CONFIG` (a ModelConfig), `build_model(config, device, dtype)`, `LECTURE`
(the lecture's parameter count and losses), optionally `RECIPE` (its TrainConfig, when it is not
the lecture's) and a LESSON.md. Everything else (training, evaluation,
sampling, checkpoints) is shared and lives in `makemore_wavenet.shared`.
"""

from __future__ import annotations

from importlib import import_module, resources
from pathlib import Path
from types import ModuleType

from makemore_wavenet.shared import checkpoint
from makemore_wavenet.shared.data import Splits, load_splits
from makemore_wavenet.shared.device import resolve_device
from makemore_wavenet.shared.fast import layer_list
from makemore_wavenet.shared.config import TrainConfig
from makemore_wavenet.shared.layers import Module
from makemore_wavenet.shared.trainer import Run, run

# Stage packages are imported on first use, so that one unfinished stage of the student edition
# (an exercise stub raises on import) leaves the others usable.
STAGES: dict[int, str] = {
    1: "stage1_baseline_mlp",
    2: "stage2_pytorchified",
    3: "stage3_block_size_8",
    4: "stage4_hierarchical",
    5: "stage5_batchnorm_fix",
    6: "stage6_scaled_up",
    7: "stage7_dilated_convolutions",
    8: "stage8_challenge",
}
RUNS_DIR = Path("runs")


def get_stage(number: int) -> ModuleType:
    if number not in STAGES:
        raise ValueError(f"there is no stage {number}; the stages are {', '.join(map(str, STAGES))}")
    return import_module(f"{__name__}.{STAGES[number]}")


def title(number: int) -> str:
    """The stage's short name, from its package name: 'block size 8' for stage3_block_size_8."""
    get_stage(number)  # checks the number
    return STAGES[number].split("_", 1)[1].replace("_", " ")


def lesson(number: int) -> str:
    return resources.files(get_stage(number)).joinpath("LESSON.md").read_text(encoding="utf-8")


def count_parameters(model: Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_fast_path(number: int) -> bool:
    """Whether the trainer's fast path (shared/fast.py) can train the stage's model: stages 1-6."""
    stage = get_stage(number)
    return layer_list(stage.build_model(stage.CONFIG, device="meta")) is not None


def recipe(number: int) -> TrainConfig:
    """The stage's training recipe: the lecture's, unless the stage brings its own RECIPE."""
    return getattr(get_stage(number), "RECIPE", TrainConfig())


def stage_splits(number: int, names: str | Path | None = None, device=None) -> Splits:
    """The splits as the stage's model reads them: context windows, or whole names (stage 7 on)."""
    c = get_stage(number).CONFIG
    return load_splits(c.block_size, path=names, device=device, whole_names=c.whole_names)


def checkpoint_path(number: int, runs_dir: str | Path = RUNS_DIR) -> Path:
    return Path(runs_dir) / f"stage{number}" / "checkpoint.pt"


def train_stage(number: int, config: TrainConfig | None = None, names: str | Path | None = None,
                runs_dir: str | Path | None = RUNS_DIR, progress: bool = True) -> Run:
    """Train a stage with `config` (default: its recipe); checkpoint and loss plot go to runs_dir/stageN/."""
    stage = get_stage(number)
    config = config or recipe(number)
    splits = stage_splits(number, names)
    out_dir = None if runs_dir is None else checkpoint_path(number, runs_dir).parent
    return run(stage.build_model, stage.CONFIG, config, splits, out_dir=out_dir, name=f"stage {number}",
               progress=progress, stage=number)


def load_model(path: str | Path, device: str = "auto") -> tuple[Module, dict]:
    """The trained model in a stage checkpoint, on `device`, in eval mode; and the checkpoint."""
    ckpt = checkpoint.load(path)
    if ckpt.get("stage") not in STAGES:
        raise checkpoint.CheckpointError(f"{path} names no known stage (stage={ckpt.get('stage')!r})")
    stage = get_stage(ckpt["stage"])
    if isinstance(ckpt["model_config"], dict):  # a stage's own config class
        ckpt["model_config"] = type(stage.CONFIG)(**ckpt["model_config"])
    model = stage.build_model(ckpt["model_config"], device=resolve_device(device))
    model.load_state(ckpt["state"])
    return model.eval(), ckpt
