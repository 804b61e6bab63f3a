"""A query and its noun phrases through the frozen text encoder in one forward: the texts packed into one
sequence, each attending only to itself.

A query used to take two forwards (the caption, then the phrases padded to the longest), and a forward of a
small BERT on a CPU costs nearly as much in fixed overhead as in arithmetic. Packed, the texts share one
forward with no padding: token t of text i sees the tokens of text i only (a block-diagonal attention mask),
at the positions it has alone (0, 1, ...), with token type 0, so each text's hidden states are those of its
own forward up to float rounding (tests/test_search_speed.py holds them within 1e-5). Only BERT models
(`model_type` "bert": the bundled MiniLM, BERT-base) are packed, since their position and token-type
embeddings are known to be these; any other encoder is run one forward per group as before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from acsa.model.text_encoder import TextEncoder


def packable(encoder: TextEncoder) -> bool:
    """Whether `encoder` is a BERT whose packed forward equals its separate ones (module docstring)."""
    config = getattr(encoder.model, "config", None)
    return getattr(config, "model_type", None) == "bert" and not getattr(config, "is_decoder", False)


Forward = Callable[[Tensor, Tensor, Tensor], Tensor]  # ids, positions [T], mask [T, T] -> states [T, H]


def torch_forward(encoder: TextEncoder) -> Forward:
    """The encoder's own (transformers) forward of one packed sequence."""

    def forward(ids: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
        return encoder.model(
            input_ids=ids[None],
            attention_mask=mask[None, None],
            position_ids=positions[None],
            token_type_ids=torch.zeros_like(ids)[None],
        ).last_hidden_state[0]

    return forward


@torch.inference_mode()
def pooled(encoder: TextEncoder, sequences: list[list[int]], forward: Forward | None = None) -> Tensor:
    """Token ids of n texts (each with its [CLS] ... [SEP]) -> each text's pooled hidden state [n, H], as
    `encoder(ids, mask)` pools it (mean over the text's tokens, or its first token), in one forward: the
    encoder's own, or `forward` (acsa.search.onnx_text)."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.tensor([token for s in sequences for token in s])  # [T]
    positions = torch.cat([torch.arange(len(s)) for s in sequences])  # [T]
    text = torch.repeat_interleave(torch.arange(len(sequences)), lengths)  # [T] the text of each token
    same = text[:, None] == text[None, :]
    mask = torch.zeros(len(text), len(text)).masked_fill_(~same, torch.finfo(torch.float32).min)  # additive
    if forward is None:
        device, dtype = encoder.model.device, encoder.model.dtype
        forward = torch_forward(encoder)
        ids, positions, mask = ids.to(device), positions.to(device), mask.to(device, dtype)
    states = forward(ids, positions, mask).float().cpu()  # [T, H]
    if encoder.pooling == "cls":
        return states[torch.cumsum(lengths, 0) - lengths]
    # the mean over each text's tokens: one product with the averaging matrix [n, T]
    average = (text[None, :] == torch.arange(len(sequences))[:, None]).float() / lengths[:, None]
    return average @ states
