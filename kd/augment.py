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

Substitutes come from one of two sources (`source`): `embedding`, the neighbours above, or `mlm`,
TinyBERT's (Jiao et al. 2020, section 3.1 "data augmentation"): the word is masked and a masked
language model's top `neighbours` whole-word predictions are its candidates (`kd.augment_mlm`).
Sentence pairs may substitute at their own rate (`p_pos_replace_pair`; AdaBERT's scripts use a
lower one for pairs), and a preset may set the number of variants per task (`n_by_task`: TinyBERT
uses 20 for SST-2, 30 for the small tasks). Named presets live in `kd/augment_presets.yaml`.

`pair_shared_words`: in a sentence pair, a word that occurs in both sentences is masked, kept or
substituted once per variant, the same way everywhere it occurs. Drawn independently, as the
papers' scripts do, a word the two sentences share (the main evidence of a paraphrase) comes out
different in each at a 30% substitution rate about half the time, and the teacher then labels
many variants of paraphrases as non-paraphrases (experiments/results/targets.md: on MRPC's 5x
`adabert` set the teacher labels 85.6% of the variants like their source row, 92.7% with this).
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from nas.base.errors import UserError
from nas.data.glue_io import Example

# BERT vocabularies reserve slots named [unused0] ... that are not registered as special tokens.
_UNUSED = re.compile(r"\[unused\d+\]")


SOURCES = ("embedding", "mlm")  # where substitutes come from

# Fields added with the presets (issue 11), and their defaults. `as_dict()` leaves a field out
# while it holds its default, so settings that existed before record exactly as they did: the
# manifest of a knowledge folder built then still matches, and the folder is reused.
_LATER_DEFAULTS = {"p_pos_replace_pair": None, "n_by_task": (), "source": "embedding", "preset": "",
                   "pair_shared_words": False}


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides the augmented set; `as_dict()` goes into the knowledge manifest."""

    n: int  # variants per input example
    seed: int = 0
    p_mask: float = 0.1
    p_pos_replace: float = 0.1  # replace by a substitute (an embedding neighbour, or an MLM prediction)
    p_ngram: float = 0.25
    ngram_range: tuple[int, int] = (1, 5)
    neighbours: int = 5  # sample among this many nearest whole words (or top MLM predictions)
    p_pos_replace_pair: float | None = None  # the substitution probability for sentence pairs; None: p_pos_replace
    n_by_task: tuple[tuple[str, int], ...] = ()  # (task, variants per row) where a task differs from n
    source: str = "embedding"  # embedding or mlm
    preset: str = ""  # the preset these settings came from, for the record
    pair_shared_words: bool = False  # a word in both sentences of a pair changes the same way in both

    def __post_init__(self):
        if not _is_int(self.n) or self.n < 0:
            raise UserError(f"setting 'n': expected a whole number, 0 or more, got {self.n!r}")
        if not _is_int(self.seed):
            raise UserError(f"setting 'seed': expected a whole number, got {self.seed!r}")
        for name in ("p_mask", "p_pos_replace", "p_ngram", "p_pos_replace_pair"):
            value = getattr(self, name)
            if value is None and name == "p_pos_replace_pair":
                continue
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
        object.__setattr__(self, "n_by_task", _task_counts(self.n_by_task))
        if self.source not in SOURCES:
            raise UserError(f"setting 'source': expected one of {', '.join(SOURCES)}, got {self.source!r}")
        if not isinstance(self.preset, str):
            raise UserError(f"setting 'preset': expected a preset name, got {self.preset!r}")
        if not isinstance(self.pair_shared_words, bool):
            raise UserError(f"setting 'pair_shared_words': expected true or false, got {self.pair_shared_words!r}")

    def as_dict(self) -> dict:
        """A plain JSON-able dict (the n-gram range as a list, the task counts as an object)."""
        data = {**asdict(self), "ngram_range": list(self.ngram_range)}
        data = {key: value for key, value in data.items()
                if key not in _LATER_DEFAULTS or value != _LATER_DEFAULTS[key]}
        if "n_by_task" in data:
            data["n_by_task"] = dict(self.n_by_task)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AugmentSettings:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(f"augmentation settings: unknown key {unknown[0]!r}")
        return cls(**data)

    def augment_kwargs(self) -> dict:
        """The keyword arguments of `augment` other than `n`, the examples and the teacher's parts."""
        return {key: value for key, value in asdict(self).items() if key != "n"}

    def for_task(self, task: str) -> AugmentSettings:
        """These settings with `n` the count for `task` (its `n_by_task` entry, else `n` as it is)."""
        return replace(self, n=dict(self.n_by_task).get(task, self.n))

    def substitution_probability(self, pair: bool) -> float:
        """`p_pos_replace`, or for a sentence pair `p_pos_replace_pair` where that is set."""
        if pair and self.p_pos_replace_pair is not None:
            return self.p_pos_replace_pair
        return self.p_pos_replace


def _task_counts(value) -> tuple[tuple[str, int], ...]:
    """{task: n} or (task, n) pairs -> sorted pairs, checked."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        pairs = [tuple(pair) for pair in pairs]
    except TypeError:
        pairs = None
    if pairs is None or not all(len(p) == 2 and isinstance(p[0], str) and _is_int(p[1]) and p[1] >= 0 for p in pairs):
        raise UserError(f"setting 'n_by_task': expected task names with whole numbers, 0 or more, got {value!r}")
    return tuple(sorted(pairs))


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


PREPARE_ROWS = 256  # examples whose substitutes are looked up together (one batch of MLM passes)


def augment(examples, n: int, *, tokenizer, word_embeddings: torch.Tensor, mlm=None, **settings) -> list[Example]:
    """`n` unlabelled variants of each example, in input order (example 0's variants first).

    `settings`: the other fields of `AugmentSettings` (seed, p_mask, p_pos_replace, ...). `mlm`:
    a `kd.augment_mlm.MaskedLMSubstitutes`, needed when `source="mlm"`. A variant that happens to
    equal its original is kept, so the output always has `n * len(examples)` rows and row `i`
    comes from example `i // n`.
    """
    return augment_with_settings(examples, AugmentSettings(n=n, **settings), tokenizer=tokenizer,
                                 word_embeddings=word_embeddings, mlm=mlm)


def augment_with_settings(examples, settings: AugmentSettings, *, tokenizer, word_embeddings, mlm=None) -> list[Example]:
    """`augment` for a caller that already holds an `AugmentSettings`."""
    return list(iter_augmented(examples, settings, tokenizer=tokenizer, word_embeddings=word_embeddings, mlm=mlm))


def iter_augmented(examples, settings: AugmentSettings, *, tokenizer, word_embeddings, mlm=None):
    """The variants of `augment_with_settings` one at a time, so a 20x set can be streamed to disk."""
    examples = list(examples)
    if settings.n == 0 or not examples:
        return
    mask_token = tokenizer.mask_token
    if settings.p_mask > 0 and mask_token is None:
        raise UserError("setting 'p_mask': the teacher's tokenizer has no mask token; use p_mask=0")
    substitutes = _substitutes(examples, settings, tokenizer, word_embeddings, mlm)
    rng = random.Random(settings.seed)
    for start in range(0, len(examples), PREPARE_ROWS):
        chunk = examples[start : start + PREPARE_ROWS]
        if substitutes is not None:
            substitutes.prepare([text for e in chunk for text in (e.text_a, e.text_b) if text])
        for example in chunk:
            p_substitute = settings.substitution_probability(example.text_b is not None)
            sides = [_words_and_candidates(text, substitutes if p_substitute > 0 else None)
                     for text in (example.text_a, example.text_b)]
            shared = _shared_words(sides) if settings.pair_shared_words and example.text_b is not None else {}
            for _ in range(settings.n):
                # The draws happen in the same order as before sources and presets existed, so the
                # default settings still give the same variants.
                fixed = {word: _changed(word, choices, rng, settings, p_substitute, mask_token)
                         for word, choices in shared.items()}
                text_a = _variant(*sides[0], rng, settings, p_substitute, mask_token, fixed)
                text_b = None if example.text_b is None else _variant(*sides[1], rng, settings, p_substitute,
                                                                      mask_token, fixed)
                yield Example(text_a=text_a, text_b=text_b, label=None, raw_label=None)


class _EmbeddingSubstitutes:
    """Substitutes of the `embedding` source: a word's neighbours, whatever its sentence."""

    def __init__(self, index: EmbeddingNeighbours):
        self.index = index

    def prepare(self, texts) -> None:
        self.index.prefetch(w for text in texts for w in text.split())

    def candidates(self, text: str) -> list[list[str]]:
        return [self.index.neighbours(word) for word in text.split()]


def _substitutes(examples, settings: AugmentSettings, tokenizer, word_embeddings, mlm):
    """The source of substitute words, or None when no example can substitute."""
    pairs = any(e.text_b is not None for e in examples)
    if settings.substitution_probability(pairs) <= 0 and settings.substitution_probability(not pairs) <= 0:
        return None
    if settings.source == "mlm":
        if mlm is None:
            raise UserError("setting 'source': mlm needs a masked language model (the teacher's MLM head, or --mlm MODEL_DIR)")
        return mlm
    index = EmbeddingNeighbours(tokenizer, word_embeddings, settings.neighbours)
    # Every word at once: one pass over the vocabulary per chunk of distinct words.
    index.prefetch(w for e in examples for text in (e.text_a, e.text_b) if text for w in text.split())
    return _EmbeddingSubstitutes(index)


def _words_and_candidates(text: str | None, substitutes) -> tuple[list[str], list[list[str]]]:
    if text is None:
        return [], []
    words = text.split()
    return words, (substitutes.candidates(text) if substitutes is not None else [[] for _ in words])


def _shared_words(sides) -> dict[str, list[str]]:
    """The words of a pair's first sentence that its second has too, each with its substitutes
    where it first occurs (an MLM's depend on the context), in sentence order (the draws' order)."""
    (words_a, candidates_a), (words_b, _) = sides
    in_b = set(words_b)
    shared = {}
    for word, choices in zip(words_a, candidates_a):
        if word in in_b and word not in shared:
            shared[word] = choices
    return shared


def _changed(word: str, choices: list[str], rng: random.Random, settings: AugmentSettings, p_substitute: float,
             mask_token) -> str:
    """The word as one variant has it: masked, a substitute, or itself."""
    if rng.random() < settings.p_mask:
        return mask_token
    if rng.random() < p_substitute and choices:
        return rng.choice(choices)  # a word without substitutes stays as it is
    return word


def _variant(words: list[str], candidates: list[list[str]], rng: random.Random, settings: AugmentSettings,
             p_substitute: float, mask_token, fixed: dict[str, str] | None = None) -> str:
    """One augmented copy of a whitespace-tokenised sentence; `candidates[i]`: the substitutes of word i;
    `fixed`: words already decided for this variant (`pair_shared_words`)."""
    out = []
    for word, choices in zip(words, candidates):
        if fixed and word in fixed:
            out.append(fixed[word])
        else:
            out.append(_changed(word, choices, rng, settings, p_substitute, mask_token))
    if out and rng.random() < settings.p_ngram:
        low, high = settings.ngram_range
        length = min(rng.randint(low, high), len(out))
        start = rng.randint(0, len(out) - length)
        out = out[start : start + length]
    return " ".join(out)
