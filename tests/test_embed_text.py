"""Frozen text features: length-sorted, trimmed batches give the same features as full-width ones."""

import torch

from acsa.config import TextConfig
from acsa.data.tokenize import load_tokenizer, tokenize
from acsa.model.text_encoder import TextEncoder, encode_texts


def test_trimmed_batches_equal_full_width_and_keep_order():
    encoder = TextEncoder(TextConfig()).eval()
    captions = [
        "a man in a red shirt",
        "a woman in a long blue coat, black boots and a bag",
        "hi",
        "grey shorts",
    ]
    tokens = tokenize(load_tokenizer("minilm"), captions, 32)
    ids, mask = torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])
    trimmed = encode_texts(encoder, ids, mask, batch_size=3, desc="test")
    with torch.no_grad():
        full = encoder(ids.long(), mask.long())
    assert trimmed.shape == (4, 384)
    assert torch.allclose(trimmed, full, atol=1e-5)
    assert not torch.allclose(trimmed[0], trimmed[1], atol=1e-3)
