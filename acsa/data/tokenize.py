"""Text tokenisation for the text encoder: fixed-length int32 `input_ids` / `attention_mask` arrays.

The tokenizer is always loaded with `AutoTokenizer.from_pretrained` from what `resolve_text_encoder` gives
(a local folder or a hub name). Never build `BertTokenizerFast(vocab_file=...)` directly: transformers 5
silently ignores the file and every word becomes [UNK].
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from acsa.errors import one_line
from acsa.paths import resolve_text_encoder

log = logging.getLogger(__name__)

# The input of a padded phrase slot, as the released code encodes it: the literal string "[PAD]", which BERT
# tokenizers read as their padding token, attended to ([CLS] [PAD] [SEP], attention mask 1 1 1). It matters
# only to a model that attends to padded slots (`model.mask_padding: false`); otherwise the slots are masked.
PAD_PHRASE = "[PAD]"


def load_tokenizer(encoder: str) -> Any:
    """The tokenizer of the configured text encoder ("minilm", a local folder, or a hub name).

    A local folder is read with `local_files_only=True`; a hub name honours HF_HUB_OFFLINE (set by the user
    or CI) and fails with a one-line message when it is neither cached nor reachable.
    """
    from transformers import AutoTokenizer  # lazy: importing transformers takes seconds

    source = resolve_text_encoder(encoder)
    local = Path(source).is_dir()
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return AutoTokenizer.from_pretrained(
            source, local_files_only=local or offline, trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        reason = one_line(err)[:300]
        raise OSError(
            f"text.encoder {encoder!r}: cannot load a tokenizer from {source!r}"
            f"{' (HF_HUB_OFFLINE is set)' if offline and not local else ''}: {reason}"
        ) from None


def tokenize(tokenizer: Any, texts: list[str], max_tokens: int) -> dict[str, np.ndarray]:
    """Tokenise `texts` to `input_ids` and `attention_mask`, int32 [N, max_tokens], padded and truncated.

    Special tokens ([CLS], [SEP]) count towards `max_tokens`. Truncated texts are counted and logged.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (room for the special tokens), got {max_tokens}")
    if not texts:
        empty = np.zeros((0, max_tokens), dtype=np.int32)
        return {"input_ids": empty, "attention_mask": empty.copy()}
    encoded = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=max_tokens, return_tensors="np"
    )
    input_ids = encoded["input_ids"].astype(np.int32)  # [N, max_tokens]
    attention_mask = encoded["attention_mask"].astype(np.int32)  # [N, max_tokens]
    # Only a full row can have been truncated; one more token of room tells whether it was.
    full = np.flatnonzero(attention_mask.sum(axis=1) == max_tokens)
    if full.size:
        longer = tokenizer([texts[i] for i in full], truncation=True, max_length=max_tokens + 1)
        truncated = [
            int(i) for i, ids in zip(full, longer["input_ids"], strict=True) if len(ids) > max_tokens
        ]
        if truncated:
            log.warning(
                "%d of %d texts were truncated to %d tokens (first: %r...)",
                len(truncated),
                len(texts),
                max_tokens,
                texts[truncated[0]][:60],
            )
    _warn_unknown(tokenizer, texts, input_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _warn_unknown(tokenizer: Any, texts: list[str], input_ids: np.ndarray) -> None:
    """Log the texts the tokenizer read (partly) as its unknown token: e.g. a word longer than WordPiece's
    100-character limit becomes a single [UNK], so a caption of one very long word is lost without being
    truncated by length."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return
    rows = np.flatnonzero((input_ids == unknown).any(axis=1))
    if rows.size:
        log.warning(
            "%d of %d texts hold words the tokenizer reads as %s, their content lost (e.g. a word of more "
            "than 100 characters; first: %r...)",
            rows.size,
            len(texts),
            getattr(tokenizer, "unk_token", "the unknown token"),
            texts[int(rows[0])][:60],
        )
