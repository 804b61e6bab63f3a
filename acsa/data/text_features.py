"""Where a batch's text features come from: cached frozen features (the embed_text stage's output, read into
a `TextBank`), or token ids for a fine-tuned encoder.

Both text sources expose `encode(model, rows, device) -> TextFeatures`, so training and scoring do not care
which. Axes: N captions, U unique phrases, P phrases per caption, D text hidden size.

A split's features file (TEXT_FEATURES/<split>.safetensors: `sentence` [N, D], `phrases` [U, D], `pad_phrase`
[1, D]) records the SHA-256 of the token file it encodes; features of other tokens (stale, or another
benchmark's) are refused.

Padded phrase slots (phrase_index -1) hold the input of a padded slot: the encoding of the literal "[PAD]"
(acsa.data.tokenize.PAD_PHRASE), as in the released code; zeros in files written before it existed. A model
that masks padding (`model.mask_padding: true`) never reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from acsa import paths
from acsa.errors import DataError, one_line
from acsa.storage.files import sha256_of

TOKENS_HASH_KEY = "acsa.tokens_sha256"  # safetensors metadata of a features file


def _check_features(
    path: Path, key: str, sentence: torch.Tensor, phrase_key: str, phrases: torch.Tensor
) -> None:
    """Both tensors are float matrices [rows, D] of the same width D."""
    for name, tensor in ((key, sentence), (phrase_key, phrases)):
        if not tensor.is_floating_point():
            raise DataError(f"{path}: {name}: expected float features, got {tensor.dtype}")
        if tensor.dim() != 2:
            raise DataError(f"{path}: {name}: expected 2 dimensions [rows, width], got {list(tensor.shape)}")
    if sentence.shape[1] != phrases.shape[1]:
        raise DataError(f"{path}: {phrase_key} are {phrases.shape[1]} wide but {key} {sentence.shape[1]}")


class TextBank:
    """Frozen text features of one split: sentence [N, D] and per-caption phrases gathered from [U, D]."""

    def __init__(
        self,
        sentence: torch.Tensor,
        phrases: torch.Tensor,
        phrase_index: torch.Tensor,
        pad_phrase: torch.Tensor | None = None,
    ) -> None:
        self.sentence = sentence  # [N, D]
        self.phrases = phrases  # [U, D]
        self.phrase_index = phrase_index  # [N, P], -1 = padding
        self.pad_phrase = (
            phrases.new_zeros(1, phrases.shape[1]) if pad_phrase is None else pad_phrase
        )  # [1, D]

    @classmethod
    def load(cls, features_path: Path, tokens_path: Path, split: dict, split_name: str) -> TextBank:
        """The features of split `split_name` (records `split`), checked against the tokens they encode."""
        features_path = Path(features_path)
        if not features_path.is_file():
            raise FileNotFoundError(f"{features_path}: not found (run the embed_text stage first)")
        with safe_open(str(features_path), framework="pt") as f:
            encoded = (f.metadata() or {}).get(TOKENS_HASH_KEY)
        if encoded != sha256_of(tokens_path):
            raise DataError(
                f"{features_path}: encodes other tokens than {tokens_path} (stale or foreign text features: "
                "rerun the embed_text stage, e.g. dvc repro)"
            )
        features = load_file(str(features_path))
        for name in ("sentence", "phrases"):
            if name not in features:
                raise DataError(f"{features_path}: no {name!r} features: not an embed_text output")
        sentence, phrases = features["sentence"], features["phrases"]
        phrase_index = torch.tensor(split["phrase_index"], dtype=torch.long)  # [N, P]
        _check_features(features_path, "sentence", sentence, "phrases", phrases)
        if sentence.shape[0] != len(split["captions"]):
            raise DataError(
                f"{features_path}: sentence has {sentence.shape[0]} rows but the {split_name} split has "
                f"{len(split['captions'])} captions (stale features: rerun dvc repro)"
            )
        needed = int(phrase_index.max()) + 1 if phrase_index.numel() else 0
        if phrases.shape[0] < needed:
            raise DataError(
                f"{features_path}: phrases has {phrases.shape[0]} rows, the split indexes {needed} phrases "
                "(stale features: rerun dvc repro)"
            )
        return cls(sentence, phrases, phrase_index, features.get("pad_phrase"))

    def __len__(self) -> int:
        return self.sentence.shape[0]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sentence [B, D], phrases [B, P, D] with the pad phrase at padding, phrase_mask [B, P] bool)."""
        index = self.phrase_index[rows]  # [B, P]
        mask = index >= 0
        phrases = torch.where(mask.unsqueeze(-1), self.phrases[index.clamp(min=0)], self.pad_phrase)
        return self.sentence[rows], phrases, mask

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-dimension (sentence mean, sentence std, phrase mean, phrase std) of this split's features.

        Sentences and phrases get their own statistics: frozen features of template sentences are nearly
        collinear while single phrases spread much more. Only the phrases the captions use count (a caption
        cut at `data.num_phrases` leaves some of the split's phrases unused).
        """
        used = torch.unique(self.phrase_index[self.phrase_index >= 0])
        phrases = self.phrases[used]
        return (
            self.sentence.mean(0),
            self.sentence.std(0).clamp(min=1e-6),
            phrases.mean(0),
            phrases.std(0).clamp(min=1e-6),
        )


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

    def __init__(self, tokens_path: Path, split: dict) -> None:
        tokens = load_file(str(tokens_path))
        self.caption_ids = tokens["caption_input_ids"].long()  # [N, L]
        self.caption_mask = tokens["caption_attention_mask"].long()
        self.phrase_ids = tokens["phrase_input_ids"].long()  # [U, Lp]
        self.phrase_token_mask = tokens["phrase_attention_mask"].long()
        self.phrase_index = torch.tensor(split["phrase_index"], dtype=torch.long)  # [N, P], -1 = padding
        self.pad_row = 0  # the token row a padded slot reads: the pad phrase, appended (else any phrase)
        if "pad_phrase_input_ids" in tokens:
            self.pad_row = self.phrase_ids.shape[0]
            self.phrase_ids = torch.cat([self.phrase_ids, tokens["pad_phrase_input_ids"].long()])
            self.phrase_token_mask = torch.cat(
                [self.phrase_token_mask, tokens["pad_phrase_attention_mask"].long()]
            )

    def __len__(self) -> int:
        return self.caption_ids.shape[0]

    def encode(self, model, rows: torch.Tensor, device: torch.device):
        index = self.phrase_index[rows]  # [B, P]
        safe = torch.where(index >= 0, index, self.pad_row)
        return model.encode_text_tokens(
            self.caption_ids[rows].to(device),
            self.caption_mask[rows].to(device),
            self.phrase_ids[safe].to(device),  # [B, P, Lp]
            self.phrase_token_mask[safe].to(device),
            (index >= 0).to(device),
        )


def open_text_source(
    finetune: bool, split_dir: Path, features_dir: Path, split: dict, split_name: str
) -> FrozenTextSource | TokenTextSource:
    """The text source of a split (its prepared folder `split_dir`): token ids when the text encoder is
    fine-tuned, else the frozen features; a file that is not safetensors is a one-line DataError."""
    tokens = Path(split_dir) / paths.TOKENS_FILE
    source = tokens if finetune else paths.features_file(features_dir, split_name)
    try:
        if finetune:
            return TokenTextSource(tokens, split)
        return FrozenTextSource(TextBank.load(source, tokens, split, split_name))
    except SafetensorError as err:
        raise DataError(f"{source}: not a readable safetensors file ({one_line(err)})") from None


def text_statistics(
    source: FrozenTextSource | TokenTextSource, split_dir: Path, features_dir: Path, split: dict
):
    """Per-dimension mean and std of the training split's frozen sentence and phrase features, which the model
    standardises with (`TextBank.statistics`); read from the features file when `source` holds token ids."""
    if isinstance(source, FrozenTextSource):
        return source.bank.statistics()
    tokens = Path(split_dir) / paths.TOKENS_FILE
    return TextBank.load(paths.features_file(features_dir, "train"), tokens, split, "train").statistics()
