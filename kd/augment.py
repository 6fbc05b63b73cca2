"""Data augmentation for distillation: unlabelled variants of the training rows for the teacher to label.

A student learns more from a teacher when it sees more inputs than the labelled set holds
(Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks", https://arxiv.org/abs/1903.12136, section 3.3; TinyBERT, Jiao et al. 2020, uses the
same idea with word-embedding neighbours). Each variant walks the words of a sentence and

- with probability `p_mask` replaces the word by the tokenizer's mask token;
- otherwise, with probability `p_pos_replace`, replaces it by one of its `neighbours` nearest
  whole words in the teacher's word-embedding space (cosine similarity), chosen uniformly;
- then, with probability `p_ngram`, keeps only a random n-gram of the result, its length drawn
  uniformly from `ngram_range` and clipped to the sentence length.

The variants carry no label: the teacher's logits are their targets.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nas.base.errors import UserError
from nas.data.glue_io import Example

# BERT vocabularies reserve slots named [unused0] ... that are not registered as special tokens.
_UNUSED = re.compile(r"\[unused\d+\]")


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides the augmented set; `as_dict()` goes into the knowledge manifest."""

    n: int  # variants per input example
    seed: int = 0
    p_mask: float = 0.1
    p_pos_replace: float = 0.1  # replace by an embedding-space neighbour
    p_ngram: float = 0.25
    ngram_range: tuple[int, int] = (1, 5)
    neighbours: int = 5  # sample among this many nearest whole words

    def __post_init__(self):
        if not _is_int(self.n) or self.n < 0:
            raise UserError(f"setting 'n': expected a whole number, 0 or more, got {self.n!r}")
        if not _is_int(self.seed):
            raise UserError(f"setting 'seed': expected a whole number, got {self.seed!r}")
        for name in ("p_mask", "p_pos_replace", "p_ngram"):
            value = getattr(self, name)
            # Written so that NaN fails too.
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
                raise UserError(f"setting {name!r}: expected a probability in [0, 1], got {value!r}")
        low_high = tuple(self.ngram_range) if isinstance(self.ngram_range, (list, tuple)) else ()
        if len(low_high) != 2 or not all(_is_int(v) for v in low_high) or not 1 <= low_high[0] <= low_high[1]:
            raise UserError(f"setting 'ngram_range': expected whole numbers 1 <= low <= high, got {self.ngram_range!r}")
        # A list from JSON becomes a tuple, so that equal settings compare and hash equal.
        object.__setattr__(self, "ngram_range", low_high)
        if not _is_int(self.neighbours) or self.neighbours < 1:
            raise UserError(f"setting 'neighbours': expected a whole number, 1 or more, got {self.neighbours!r}")

    def as_dict(self) -> dict:
        """A plain JSON-able dict (the n-gram range as a list)."""
        return {**asdict(self), "ngram_range": list(self.ngram_range)}

    @classmethod
    def from_dict(cls, data: dict) -> AugmentSettings:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(f"augmentation settings: unknown key {unknown[0]!r}")
        return cls(**data)

    def augment_kwargs(self) -> dict:
        """The keyword arguments of `augment` other than `n`, the examples and the teacher's parts."""
        return {key: value for key, value in asdict(self).items() if key != "n"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EmbeddingNeighbours:
    """Nearest whole words by cosine similarity in a teacher's input word-embedding space.

    Only vocabulary entries that are whole words take part: special tokens, `[unused*]` slots and
    `##` WordPiece continuations are left out, both as queries and as answers (Tang et al.
    replace whole words only). Other vocabularies (BPE, SentencePiece) mark word starts instead,
    so few of their entries match a plain word; those words are simply never replaced.
    """

    def __init__(self, tokenizer, word_embeddings: torch.Tensor, k: int, chunk_size: int = 256):
        vocab = tokenizer.get_vocab()
        special = set(tokenizer.all_special_tokens)
        # Sorted by id, so that ties between equally near words break the same way every run.
        self.words = sorted((w for w in vocab if _is_whole_word(w, special)), key=vocab.__getitem__)
        ids = torch.tensor([vocab[w] for w in self.words], dtype=torch.long)
        if ids.numel() and int(ids.max()) >= word_embeddings.shape[0]:
            raise UserError(
                f"word embeddings have {word_embeddings.shape[0]} rows but the tokenizer has id {int(ids.max())}"
            )
        self.k = k
        self.chunk_size = chunk_size
        self._row = {word: i for i, word in enumerate(self.words)}
        self._unit = F.normalize(word_embeddings.detach().float()[ids], dim=1)  # (W, D)
        self._cache: dict[str, list[str]] = {}

    def __contains__(self, word: str) -> bool:
        return word in self._row

    def neighbours(self, word: str) -> list[str]:
        """The k nearest whole words, nearest first, never the word itself; [] for a word not in the vocabulary."""
        if word not in self._row:
            return []
        if word not in self._cache:
            self.prefetch([word])
        return self._cache[word]

    def prefetch(self, words) -> None:
        """Answer many words at once: one (B, D) x (D, W) product per chunk instead of one per word."""
        todo = [w for w in dict.fromkeys(words) if w in self._row and w not in self._cache]
        k = min(self.k, len(self.words) - 1)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            rows = torch.tensor([self._row[w] for w in chunk], dtype=torch.long)  # (B,)
            similarity = self._unit[rows] @ self._unit.T  # (B, W)
            similarity[torch.arange(len(chunk)), rows] = float("-inf")  # a word is not its own neighbour
            nearest = similarity.topk(k, dim=1).indices.tolist()  # (B, k)
            for word, indices in zip(chunk, nearest):
                self._cache[word] = [self.words[i] for i in indices]


def _is_whole_word(token: str, special: set[str]) -> bool:
    return bool(token) and token not in special and not token.startswith("##") and not _UNUSED.fullmatch(token)


def augment(
    examples,
    n: int,
    *,
    tokenizer,
    word_embeddings: torch.Tensor,
    seed: int = 0,
    p_mask: float = 0.1,
    p_pos_replace: float = 0.1,
    p_ngram: float = 0.25,
    ngram_range: tuple[int, int] = (1, 5),
    neighbours: int = 5,
) -> list[Example]:
    """`n` unlabelled variants of each example, in input order (example 0's variants first).

    A variant that happens to equal its original is kept, so the output always has
    `n * len(examples)` rows and row `i` comes from example `i // n`.
    """
    settings = AugmentSettings(
        n=n, seed=seed, p_mask=p_mask, p_pos_replace=p_pos_replace, p_ngram=p_ngram,
        ngram_range=ngram_range, neighbours=neighbours,
    )  # fmt: skip
    return augment_with_settings(examples, settings, tokenizer=tokenizer, word_embeddings=word_embeddings)


def augment_with_settings(examples, settings: AugmentSettings, *, tokenizer, word_embeddings) -> list[Example]:
    """`augment` for a caller that already holds an `AugmentSettings`."""
    return list(iter_augmented(examples, settings, tokenizer=tokenizer, word_embeddings=word_embeddings))


def iter_augmented(examples, settings: AugmentSettings, *, tokenizer, word_embeddings):
    """The variants of `augment_with_settings` one at a time, so a 20x set can be streamed to disk."""
    examples = list(examples)
    if settings.n == 0 or not examples:
        return
    mask_token = tokenizer.mask_token
    if settings.p_mask > 0 and mask_token is None:
        raise UserError("setting 'p_mask': the teacher's tokenizer has no mask token; use p_mask=0")
    index = None
    if settings.p_pos_replace > 0:
        index = EmbeddingNeighbours(tokenizer, word_embeddings, settings.neighbours)
        index.prefetch(w for e in examples for text in (e.text_a, e.text_b) if text for w in text.split())
    rng = random.Random(settings.seed)
    for example in examples:
        for _ in range(settings.n):
            text_a = _variant(example.text_a, rng, settings, mask_token, index)
            text_b = None if example.text_b is None else _variant(example.text_b, rng, settings, mask_token, index)
            yield Example(text_a=text_a, text_b=text_b, label=None, raw_label=None)


def _variant(text: str, rng: random.Random, settings: AugmentSettings, mask_token, index) -> str:
    """One augmented copy of a whitespace-tokenised sentence."""
    words = []
    for word in text.split():
        if rng.random() < settings.p_mask:
            words.append(mask_token)
        elif rng.random() < settings.p_pos_replace and (choices := index.neighbours(word) if index else []):
            words.append(rng.choice(choices))  # words outside the whole-word vocabulary stay as they are
        else:
            words.append(word)
    if words and rng.random() < settings.p_ngram:
        low, high = settings.ngram_range
        length = min(rng.randint(low, high), len(words))
        start = rng.randint(0, len(words) - length)
        words = words[start : start + length]
    return " ".join(words)
