"""Frozen text features: length-sorted, trimmed batches give the same features as full-width ones; the input
of padded phrase slots."""

import json

import torch
from safetensors.torch import load_file

from acsa import paths
from acsa.config.sections import TextConfig
from acsa.data.text_features import open_text_source
from acsa.data.tokenize import PAD_PHRASE, load_tokenizer, tokenize
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


def test_padded_phrase_slots_get_the_released_codes_pad_phrase(smoke_run, tmp_path):
    """The input of a padded slot is the literal "[PAD]", read by the tokenizer as its padding token and
    attended to, as the released code encodes it; prepare tokenises it and embed_text encodes it."""
    tokens = tokenize(load_tokenizer("minilm"), [PAD_PHRASE], 6)
    assert tokens["input_ids"].tolist() == [[101, 0, 102, 0, 0, 0]]  # [CLS] [PAD] [SEP], then padding
    assert tokens["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0]]
    prepared = load_file(str(smoke_run / "prepared" / "train" / paths.TOKENS_FILE))
    features = load_file(str(paths.features_file(smoke_run / "features", "train")))
    assert prepared["pad_phrase_input_ids"][0, :3].tolist() == [101, 0, 102]
    encoder = TextEncoder(TextConfig()).eval()
    with torch.no_grad():
        expected = encoder(
            prepared["pad_phrase_input_ids"].long(), prepared["pad_phrase_attention_mask"].long()
        )
    torch.testing.assert_close(features["pad_phrase"], expected, atol=1e-5, rtol=1e-5)

    records = json.loads((smoke_run / "prepared" / "train" / paths.RECORDS_FILE).read_text())
    index = torch.tensor(records["phrase_index"])
    row = int((index < 0).any(dim=1).nonzero()[0])  # a caption with padded slots
    frozen = open_text_source(
        False, smoke_run / "prepared" / "train", smoke_run / "features", records, "train"
    )
    _, phrases, mask = frozen.bank.batch(torch.tensor([row]))
    assert (~mask).any()
    torch.testing.assert_close(phrases[~mask], features["pad_phrase"].expand(int((~mask).sum()), -1))
    torch.testing.assert_close(phrases[mask], features["phrases"][index[row][index[row] >= 0]])

    tokens_source = open_text_source(True, smoke_run / "prepared" / "train", tmp_path, records, "train")
    seen = {}

    class Recorder:
        def encode_text_tokens(self, caption_ids, caption_mask, phrase_ids, phrase_ids_mask, phrase_mask):
            seen.update(ids=phrase_ids, mask=phrase_mask)

    tokens_source.encode(Recorder(), torch.tensor([row]), torch.device("cpu"))
    pads = seen["ids"][0][~seen["mask"][0]]
    assert (pads == prepared["pad_phrase_input_ids"].long()).all()
