"""Offline noun-phrase extraction (Pattern tagger + clothing lexicon + regex chunker)."""

from __future__ import annotations

import pytest

from acsa.data.phrases import extract_all, extract_noun_phrases


def test_reference_caption():
    caption = "a man wearing a red shirt and blue jeans, carrying a black backpack"
    assert extract_noun_phrases(caption, 10) == ["man", "red shirt", "blue jeans", "black backpack"]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (
            "The man is wearing a white T-shirt, grey shorts and black sneakers.",
            ["man", "white t-shirt", "grey shorts", "black sneakers"],
        ),
        (
            "The pedestrian wears a long-sleeved top and a checked coat.",
            ["pedestrian", "long-sleeved top", "checked coat"],
        ),
        (
            "She has a hoodie, a skirt, sandals, a cap and a handbag with an umbrella.",
            ["hoodie", "skirt", "sandals", "cap", "handbag", "umbrella"],
        ),
        (
            "A woman in a black and white striped dress, boots and a hat.",
            ["woman", "black and white striped dress", "boots", "hat"],
        ),
    ],
)
def test_clothing_words(caption, expected):
    assert extract_noun_phrases(caption, 10) == expected


def test_order_duplicates_pronouns_and_glued_sentences():
    caption = "The woman wears a red coat.She carries a bag.Her red coat is long and her bag is big."
    assert extract_noun_phrases(caption, 10) == ["woman", "red coat", "bag"]


def test_max_phrases():
    caption = "a man wearing a red shirt and blue jeans, carrying a black backpack"
    assert extract_noun_phrases(caption, 2) == ["man", "red shirt"]
    assert extract_noun_phrases(caption, 0) == []
    with pytest.raises(ValueError):
        extract_noun_phrases(caption, -1)


@pytest.mark.parametrize(
    "caption", ["", "   ", "...!!", ",", "😀 😀", "¿¡", "一个穿红色衬衫的男人", "café naïve"]
)
def test_odd_input_does_not_crash(caption):
    phrases = extract_noun_phrases(caption, 5)
    assert isinstance(phrases, list) and len(phrases) <= 5
    assert all(p.strip() and p == p.lower() for p in phrases)


def test_extract_all_matches_single_calls():
    captions = ["a man in a red shirt", "a woman with a handbag", "a man in a red shirt", ""]
    result = extract_all(captions, 3)
    assert result == [extract_noun_phrases(c, 3) for c in captions]
    result[0].append("changed")  # cached lists are not shared between repeated captions
    assert result[2] == ["man", "red shirt"]
