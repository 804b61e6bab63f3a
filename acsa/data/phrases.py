"""Noun phrases of captions, offline: TextBlob's bundled Pattern tagger, a clothing lexicon, a regex chunker.

The released ACSA code used TextBlob's default extractor, which needs NLTK corpora that cannot be
downloaded here; Pattern's tagger ships with TextBlob and needs no data. Pattern's own chunker merges
"jeans and a hat" into one chunk and splits "red and blue shirt", so noun phrases are chunked here with one
regular expression over the tags.

Phrase form (kept consistent everywhere): lowercase, no leading determiner or possessive ("a red shirt",
"his red shirt" -> "red shirt", as TextBlob's extractor gave in the released code; it also makes repeated
phrases identical, so fewer unique phrases need encoding). A phrase ends in a noun (pronouns such as "she"
are dropped); "and" joins adjectives ("black and white shirt"), never two phrases. Order of appearance is
kept, duplicates within a caption are dropped, and at most `max_phrases` are returned.
"""

from __future__ import annotations

import logging
import re

from tqdm.auto import tqdm

from acsa.data.readers import fix_full_stops

log = logging.getLogger(__name__)

# Words the Pattern lexicon mis-tags in pedestrian captions ("t-shirt" JJ, "top" JJ, "pedestrian" JJ,
# "checked" VBN, ...). Applied to the lowercased token after tagging, before chunking.
_NOUNS = """
t-shirt tshirt shirt top blouse sweater hoodie jumper cardigan vest coat jacket suit dress skirt uniform
backpack handbag bag purse umbrella hat cap helmet scarf belt watch phone bottle suitcase box book
man woman person pedestrian boy girl lady guy child kid
""".split()
_PLURAL_NOUNS = """
jeans shorts trousers pants leggings tights sneakers shoes boots sandals slippers heels socks glasses
sunglasses gloves stripes
""".split()
_ADJECTIVES = """
striped checked plaid patterned printed hooded sleeveless short-sleeved long-sleeved colored coloured
light-colored dark-colored
""".split()
LEXICON: dict[str, str] = {
    **{w: "NN" for w in _NOUNS},
    **{w: "NNS" for w in _PLURAL_NOUNS},
    **{w: "JJ" for w in _ADJECTIVES},
}

# Each tag becomes one symbol so that a noun phrase is a plain regular expression over the sentence.
_SYMBOLS = {
    **dict.fromkeys(("DT", "PDT", "PRP$", "WP$"), "D"),  # determiners and possessives: dropped
    **dict.fromkeys(("JJ", "JJR", "JJS"), "J"),
    **dict.fromkeys(("RB", "RBR", "RBS"), "R"),
    **dict.fromkeys(("NN", "NNS", "NNP", "NNPS"), "N"),
    "CD": "K",
    "CC": "C",
}
# Optional determiner, then modifiers (adjectives with their adverbs, numbers, nouns), ending in a noun.
# "and" joins adjectives only ("black and white striped shirt"), never two noun phrases.
_NOUN_PHRASE = re.compile(r"D*((?:R*J(?:CR*J)*|K|N)*N)")
_NOT_TEXT = re.compile(r"^\W*$")


def _retag(token: str, tag: str) -> tuple[str, str]:
    return token, LEXICON.get(token.lower(), tag)


def _tag(text: str) -> list[list[list[str]]]:
    from textblob.en import parse  # lazy: loading Pattern's lexicon takes a second or two

    # split=True -> sentences as lists of [word, tag]
    return parse(text, tags=True, chunks=False, split=True, map=_retag)


def _sentence_phrases(sentence: list[list[str]]) -> list[str]:
    symbols = "".join(_SYMBOLS.get(tag, "O") for _, tag in sentence)
    phrases = []
    for match in _NOUN_PHRASE.finditer(symbols):
        words = [word.lower() for word, _ in sentence[match.start(1) : match.end(1)]]
        phrase = " ".join(w for w in words if not _NOT_TEXT.match(w))
        if phrase:
            phrases.append(phrase)
    return phrases


def extract_noun_phrases(caption: str, max_phrases: int) -> list[str]:
    """Lowercase noun phrases of `caption` in order, without duplicates, at most `max_phrases`."""
    if max_phrases < 0:
        raise ValueError(f"max_phrases must be >= 0, got {max_phrases}")
    text = " ".join(fix_full_stops(caption).split())
    if not text or max_phrases == 0:
        return []
    phrases: list[str] = []
    for sentence in _tag(text):
        for phrase in _sentence_phrases(sentence):
            if phrase not in phrases:
                phrases.append(phrase)
                if len(phrases) == max_phrases:
                    return phrases
    return phrases


def extract_all(captions: list[str], max_phrases: int) -> list[list[str]]:
    """`extract_noun_phrases` for many captions; repeated captions are parsed once."""
    cache: dict[str, list[str]] = {}
    result = []
    for caption in tqdm(captions, desc="noun phrases", unit="caption", disable=None):
        if caption not in cache:
            cache[caption] = extract_noun_phrases(caption, max_phrases)
        result.append(list(cache[caption]))
    log.info("noun phrases: %d captions, %d unique parsed", len(captions), len(cache))
    return result
