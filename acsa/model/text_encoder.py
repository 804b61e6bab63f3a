"""The text encoder: a transformers BERT-family model pooled to one vector per text, and the length-sorted
batch encoding that computes the frozen features once (embed_text stage).

Axis legend: n texts (captions or phrases), l word-piece tokens, e text hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm import tqdm

from acsa.config.sections import TextConfig
from acsa.paths import resolve_text_encoder


class TextEncoder(nn.Module):
    """A transformers BERT-family encoder pooled to one vector per text: [n, l] token ids -> [n, e].

    Frozen by default (no gradients, always in eval mode, so its features can be cached once); trainable when
    `cfg.finetune`. `model` injects an already built transformers model (tests use a tiny random BERT);
    `pretrained=False` builds the architecture of `cfg.encoder` with random weights (a checkpoint follows).
    """

    def __init__(self, cfg: TextConfig, model: nn.Module | None = None, pretrained: bool = True) -> None:
        super().__init__()
        if cfg.pooling not in ("mean", "cls"):
            raise ValueError(f"text.pooling: {cfg.pooling!r} is not one of mean, cls")
        self.pooling = cfg.pooling
        self.finetune = cfg.finetune
        if model is None:
            from transformers import AutoConfig, AutoModel

            source = resolve_text_encoder(cfg.encoder)
            # never run a model's own Python code (nor ask whether to): resolve_text_encoder refuses a local
            # folder that asks for it, and transformers refuses a hub model that does
            if pretrained:
                model = AutoModel.from_pretrained(source, trust_remote_code=False)
            else:
                config = AutoConfig.from_pretrained(source, trust_remote_code=False)
                model = AutoModel.from_config(config, trust_remote_code=False)
        self.model = model
        if not self.finetune:
            self.model.requires_grad_(False)
            self.model.eval()

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.finetune:
            self.model.eval()  # a frozen encoder never runs dropout
        return self

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                return states[:, 0]
            mask = attention_mask.to(states.dtype)[..., None]  # [n, l, 1]
            return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def encode_texts(
    encoder: TextEncoder, ids: torch.Tensor, mask: torch.Tensor, batch_size: int, desc: str
) -> torch.Tensor:
    """Pooled features [N, H] of tokenised texts, float32 on the CPU.

    Texts are encoded in order of length and each batch is cut to its longest text: most captions use far
    fewer tokens than the padded width, and attention cost grows with it. Results return in input order.
    """
    device = next(encoder.parameters()).device
    lengths = mask.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    features = None
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, leave=False):
        rows = order[start : start + batch_size]
        width = max(1, int(lengths[rows].max()))
        batch_ids, batch_mask = ids[rows, :width].long().to(device), mask[rows, :width].long().to(device)
        batch = encoder(batch_ids, batch_mask).float().cpu()
        if features is None:
            features = torch.empty(len(ids), batch.shape[1])
        features[rows] = batch
    return features


def load_text_encoder(cfg: TextConfig, device: torch.device) -> TextEncoder:
    encoder = TextEncoder(cfg).to(device)
    encoder.eval()
    return encoder
