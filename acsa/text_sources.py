"""Where a batch's text features come from: cached frozen features, or token ids for a fine-tuned encoder.

Both expose `encode(model, rows, device) -> TextFeatures` so the trainer and the evaluator do not care which.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from acsa.data.dataset import TextBank


class FrozenTextSource:
    """Pooled hidden states computed once by the embed_text stage (a frozen encoder costs nothing per
    epoch)."""

    def __init__(self, bank: TextBank) -> None:
        self.bank = bank

    def __len__(self) -> int:
        return len(self.bank)

    def encode(self, model, rows: torch.Tensor, device: torch.device):
        sentence, phrases, mask = self.bank.batch(rows)
        return model.encode_text(sentence.to(device), phrases.to(device), mask.to(device))


class TokenTextSource:
    """Token ids of captions and of their noun phrases, for a text encoder that is fine-tuned."""

    def __init__(self, tokens_path: Path, split: dict, split_name: str) -> None:
        tokens = load_file(str(tokens_path))
        self.caption_ids = tokens[f"{split_name}.caption_input_ids"].long()  # [N, L]
        self.caption_mask = tokens[f"{split_name}.caption_attention_mask"].long()
        self.phrase_ids = tokens["phrase_input_ids"].long()  # [U, Lp]
        self.phrase_token_mask = tokens["phrase_attention_mask"].long()
        self.phrase_index = torch.tensor(split["phrase_index"], dtype=torch.long)  # [N, P], -1 = padding

    def __len__(self) -> int:
        return self.caption_ids.shape[0]

    def encode(self, model, rows: torch.Tensor, device: torch.device):
        index = self.phrase_index[rows]  # [B, P]
        safe = index.clamp(min=0)
        return model.encode_text_tokens(
            self.caption_ids[rows].to(device),
            self.caption_mask[rows].to(device),
            self.phrase_ids[safe].to(device),  # [B, P, Lp]
            self.phrase_token_mask[safe].to(device),
            (index >= 0).to(device),
        )


def text_source_for(
    finetune: bool, prepared_dir: Path, features_path: Path, split: dict, split_name: str
) -> FrozenTextSource | TokenTextSource:
    if finetune:
        return TokenTextSource(Path(prepared_dir) / "tokens.safetensors", split, split_name)
    return FrozenTextSource(TextBank.load(features_path, split, split_name))
