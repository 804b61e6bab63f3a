"""What a training run leaves behind to be continued, and how a new run decides to continue it.

After every epoch rank 0 calls `save_epoch`: the best weights first (`best-epoch-NNN.safetensors`, for a
new best epoch), then `epoch-NNN.safetensors` (model, optimizer, `RunState`, the configuration and a
fingerprint of the data), then pruning (`CheckpointFolder`). A kill between any two writes
leaves a newest good epoch file whose best file exists. `resume_checkpoint` continues only a checkpoint of
the same configuration (up to `RESUME_IGNORES`) and the same data, and says why it starts afresh otherwise.
DVCLive's logs are rebuilt from the checkpoint's history (acsa.training.live), so they match the
checkpoint whatever moment the run died at. The file format itself is acsa.storage.checkpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.optim import Optimizer

from acsa.errors import CheckpointError
from acsa.storage.checkpoint import Checkpoint, check_checkpoint, load_checkpoint, save_checkpoint
from acsa.storage.files import held_lock, sha256_of

log = logging.getLogger(__name__)

KEEP_EPOCH_CHECKPOINTS = 2  # the newest and, should it be unreadable, the one before
# Settings that change how fast, not what, a run trains: a checkpoint written under other values resumes.
# Not train.threads: on a CPU the number of threads changes how float sums are split, and a run trained with
# one thread and the same run with two end about 2 validation R@1 points apart (README, The study).
RESUME_IGNORES = (
    "train.device",
    "train.num_workers",
    "train.compile",
    "train.nproc_per_node",
    "train.parallel_runs",
    "evaluate.batch_size",
    "evaluate.chunk_size",
    "evaluate.local_mode",
    "evaluate.rerank_k",
)


@dataclass
class RunState:
    """What a checkpoint carries besides model and optimizer."""

    epoch: int = 0  # the next epoch to train
    step: int = 0  # optimizer steps done
    best: dict = field(default_factory=lambda: {"epoch": -1, "val/selection_R1": -1.0})
    history: list[dict] = field(default_factory=list)  # the logged metrics of every finished epoch

    @classmethod
    def from_meta(cls, meta: dict) -> RunState:
        return cls(meta["epoch"] + 1, meta["step"], dict(meta["best"]), list(meta["history"]))


def latest_good_checkpoint(folder: Path, pattern: str = "epoch-*.safetensors") -> Path | None:
    """The newest checkpoint in `folder` (by the numbers in its name) that opens and parses, or None.

    Validation reads the header and structure only, not the tensors; safetensors checks the header against the
    file size, so a truncated file is caught.
    """
    candidates = sorted(Path(folder).glob(pattern), key=_name_order, reverse=True)
    broken: list[Path] = []
    for path in candidates:
        try:
            check_checkpoint(path)
        except CheckpointError as err:
            log.warning("skipping unusable checkpoint: %s", err)
            broken.append(path)
            continue
        if broken:
            log.warning("using the previous good checkpoint %s instead of %s", path, broken[0])
        return path
    return None


class CheckpointFolder:
    """The resume state of one training run, in one folder:

        epoch-NNN.safetensors       model, optimizer and meta after epoch NNN (the newest few epochs)
        best-epoch-NNN.safetensors  model weights of epoch NNN, the best so far of some kept epoch file
        .lock                       locked (flock) by the process that trains into the folder

    Every epoch file names its own best epoch, so a best file is never overwritten while a kept epoch file
    still refers to it: whatever moment a run is killed at, the newest good epoch file and its best agree.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def epoch_path(self, epoch: int) -> Path:
        return self.root / f"epoch-{epoch:03d}.safetensors"

    def best_path(self, epoch: int) -> Path:
        return self.root / f"best-epoch-{epoch:03d}.safetensors"

    def latest(self) -> Path | None:
        """The newest epoch checkpoint that opens (see `latest_good_checkpoint`)."""
        return latest_good_checkpoint(self.root, "epoch-*.safetensors")

    def files(self) -> list[Path]:
        return (
            sorted(p for p in self.root.glob("*") if p.is_file() and p.name != ".lock")
            if self.root.is_dir()
            else []
        )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process; a second run training into it fails at once with CheckpointError.

        The lock dies with its process (even on SIGKILL), so a crashed run never blocks the next one.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        busy = CheckpointError(
            f"{self.root}: another training run is writing checkpoints here (it holds .lock)"
        )
        with held_lock(self.root / ".lock", busy):
            yield

    def remove_temporary_files(self) -> None:
        """Delete the half-written files of a process killed inside `save_checkpoint`."""
        for path in self.root.glob(".*.tmp"):
            log.info("removing %s, left by an interrupted checkpoint write", path)
            path.unlink(missing_ok=True)

    def prune(self, keep_epochs: int, best_epochs: set[int]) -> None:
        """Keep the newest `keep_epochs` epoch files and the best files of `best_epochs`."""
        for path in sorted(self.root.glob("epoch-*.safetensors"), key=_name_order)[:-keep_epochs]:
            path.unlink(missing_ok=True)
        for path in self.root.glob("best-epoch-*.safetensors"):
            if _name_order(path)[0][:1] not in {(epoch,) for epoch in best_epochs}:
                path.unlink(missing_ok=True)

    def clear(self, lock: bool = False) -> None:
        """Delete the checkpoints (and the lock file, once no run holds it) but keep the folder: DVC fails a
        stage whose declared output is missing."""
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.is_file() and (lock or path.name != ".lock"):
                    path.unlink(missing_ok=True)


def _name_order(path: Path) -> tuple[tuple[int, ...], str]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name)), path.name


def data_fingerprint(files: list[Path]) -> str:
    """SHA-256 over the contents of `files` (what training reads besides the images)."""
    return sha256_of(*files)


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict) or not config:
        return {prefix.rstrip("."): config}
    return {k: v for key, value in config.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def config_differences(stored: Any, current: dict) -> list[str]:
    """Dotted keys whose values differ between a checkpoint's configuration and `current`."""
    old, new = _flat(stored if isinstance(stored, dict) else {"": stored}), _flat(current)
    missing = object()
    keys = sorted(old.keys() | new.keys())
    return [
        key for key in keys if key not in RESUME_IGNORES and old.get(key, missing) != new.get(key, missing)
    ]


def resume_checkpoint(folder: CheckpointFolder, config: dict, data: str) -> Checkpoint | None:
    """The checkpoint to continue from, or None to start afresh (the folder is emptied then).

    Never continues a checkpoint of another configuration or other data: the warning says which.
    """
    folder.remove_temporary_files()
    path = folder.latest()
    checkpoint = load_checkpoint(path) if path is not None else None
    if checkpoint is not None:
        differing = config_differences(checkpoint.meta.get("config"), config)
        if not {"data", "history", "best", "step"} <= checkpoint.meta.keys():
            log.warning("%s was written by an older version of acsa: starting afresh", path)
            checkpoint = None
        elif differing:
            shown = ", ".join(differing[:5]) + (", ..." if len(differing) > 5 else "")
            log.warning("%s was written with another configuration (%s): starting afresh", path, shown)
            checkpoint = None
        elif checkpoint.meta.get("data") != data:
            log.warning(
                "%s was trained on other data (splits or text features changed): starting afresh", path
            )
            checkpoint = None
    if checkpoint is None:
        if folder.files():
            log.info("clearing %s", folder.root)
            folder.clear()
        return None
    meta = checkpoint.meta
    try:
        check_checkpoint(folder.best_path(meta["best"]["epoch"]))
    except CheckpointError as err:  # deleted by hand, say: the resumed epoch stands in as the best so far
        log.warning(
            "best epoch's weights unusable (%s): taking epoch %d as the best so far", err, meta["epoch"]
        )
        meta["best"] = {
            "epoch": meta["epoch"],
            "val/selection_R1": meta["history"][-1].get("val/selection_R1", -1.0),
        }
        save_checkpoint(folder.best_path(meta["epoch"]), checkpoint.model_state, None, {"best": meta["best"]})
    log.info("resuming from %s (epoch %d done, step %d)", path, meta["epoch"], meta["step"])
    return checkpoint


def save_epoch(
    folder: CheckpointFolder,
    model: nn.Module,
    optimizer: Optimizer,
    state: RunState,
    logged: dict,
    config: dict,
    data: str,
    choices: dict | None = None,
) -> None:
    """Record the finished epoch `state.epoch` (its metrics `logged`): update `state.best` and history.
    `choices` are the epoch's validation choices (fusion weight and curve), kept with the best epoch.

    Order matters: best weights, then the epoch file that refers to them, then pruning.
    """
    epoch, previous_best = state.epoch, state.best["epoch"]
    if "val/selection_R1" not in logged or logged["val/selection_R1"] > state.best["val/selection_R1"]:
        state.best = {
            "epoch": epoch,
            "val/selection_R1": logged.get("val/selection_R1", -1.0),
            **(choices or {}),
        }
        save_checkpoint(folder.best_path(epoch), model.state_dict(), None, {"best": state.best})
    state.history.append(logged)
    meta = {
        "config": config,
        "data": data,
        "epoch": epoch,
        "step": state.step,
        "best": state.best,
        "history": state.history,
    }
    save_checkpoint(folder.epoch_path(epoch), model.state_dict(), optimizer.state_dict(), meta)
    folder.prune(KEEP_EPOCH_CHECKPOINTS, {state.best["epoch"], previous_best})
