"""Augmentation for distillation: counts, order, seeds, and each operation on a tiny real tokenizer."""

import json

import pytest
import torch
from transformers import BertTokenizerFast

from kd.augment import AugmentSettings, EmbeddingNeighbours, augment
from nas.base.errors import UserError
from nas.data.glue_io import Example

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"]
# Each pair shares an axis of the embedding space, so each word's nearest neighbour is its partner.
PAIRS = [("good", "great"), ("bad", "awful"), ("movie", "film"), ("the", "a"), ("plot", "story"), ("fine", "okay")]
NEAREST = {**dict(PAIRS), **{b: a for a, b in PAIRS}}
WORDS = [w for pair in PAIRS for w in pair]
VOCAB = SPECIAL + WORDS + ["##ing"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # From a local folder rather than `vocab_file=`: transformers 5 ignores that argument.
    return BertTokenizerFast.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def embeddings():
    """(V, D): pair i is e_i and e_i + 0.2 e_{i+1}; decoys sit exactly on real words."""
    dim = len(PAIRS)
    table = torch.zeros(len(VOCAB), dim)
    for i, (a, b) in enumerate(PAIRS):
        table[VOCAB.index(a), i] = 1.0
        table[VOCAB.index(b), i] = 1.0
        table[VOCAB.index(b), (i + 1) % dim] = 0.2
    # Special tokens and subword pieces identical to a word: they must never be offered as neighbours.
    table[VOCAB.index("[MASK]")] = table[VOCAB.index("good")]
    table[VOCAB.index("[unused0]")] = table[VOCAB.index("movie")]
    table[VOCAB.index("##ing")] = table[VOCAB.index("bad")]
    table[VOCAB.index("[PAD]")] = table[VOCAB.index("the")]
    return table


SINGLES = [
    Example("the movie was good", None, 1, "1"),
    Example("a bad plot", None, 0, "0"),
    Example("fine", None, 1, "1"),
]
PAIRED = [Example("the plot was great", "a film", 1, "entailment")]


def run(examples, n, tokenizer, embeddings, **kwargs):
    return augment(examples, n, tokenizer=tokenizer, word_embeddings=embeddings, **kwargs)


def test_the_tokenizer_knows_the_words(tokenizer):
    # Guards the fixture itself: every test word must be a single vocabulary entry.
    assert [tokenizer.convert_tokens_to_ids(w) for w in WORDS] == [VOCAB.index(w) for w in WORDS]
    assert tokenizer.mask_token == "[MASK]"


def test_nearest_neighbour_is_the_partner_and_never_a_special_token(tokenizer, embeddings):
    index = EmbeddingNeighbours(tokenizer, embeddings, k=1)
    assert {w: index.neighbours(w) for w in WORDS} == {w: [NEAREST[w]] for w in WORDS}
    assert index.words == WORDS
    assert index.neighbours("cinematography") == [] and index.neighbours("[MASK]") == []
    assert index.neighbours("##ing") == []


def test_neighbours_are_sorted_nearest_first_and_batching_agrees(tokenizer, embeddings):
    single = EmbeddingNeighbours(tokenizer, embeddings, k=3)
    answers = {w: single.neighbours(w) for w in WORDS}
    batched = EmbeddingNeighbours(tokenizer, embeddings, k=3, chunk_size=5)
    batched.prefetch(WORDS)
    assert {w: batched.neighbours(w) for w in WORDS} == answers
    # "great" = e_0 + 0.2 e_1 points a little towards pair 1 ("bad" = e_1, then "awful").
    assert answers["great"][:2] == ["good", "bad"]
    assert all(len(v) == 3 and w not in v for w, v in answers.items())


def test_count_order_and_no_labels(tokenizer, embeddings):
    # Nothing changes the words, so each output row shows where it came from.
    out = run(SINGLES, 4, tokenizer, embeddings, p_mask=0, p_pos_replace=0, p_ngram=0)
    assert [e.text_a for e in out] == [e.text_a for e in SINGLES for _ in range(4)]
    assert all(e.text_b is None and e.label is None and e.raw_label is None for e in out)
    assert run(SINGLES, 0, tokenizer, embeddings) == []


def test_same_seed_same_output_and_other_seed_other_output(tokenizer, embeddings):
    kwargs = dict(p_mask=0.3, p_pos_replace=0.3, p_ngram=0.5)
    first = run(SINGLES + PAIRED, 5, tokenizer, embeddings, seed=3, **kwargs)
    assert run(SINGLES + PAIRED, 5, tokenizer, embeddings, seed=3, **kwargs) == first
    assert run(SINGLES + PAIRED, 5, tokenizer, embeddings, seed=4, **kwargs) != first
    assert len(first) == 20


def test_p_mask_one_masks_every_word(tokenizer, embeddings):
    out = run(SINGLES, 2, tokenizer, embeddings, p_mask=1, p_ngram=0)
    assert [e.text_a.split() for e in out] == [["[MASK]"] * len(e.text_a.split()) for e in SINGLES for _ in range(2)]


def test_p_pos_replace_one_takes_the_nearest_neighbour_of_known_words(tokenizer, embeddings):
    source = Example("the cinematography of the movie was good", None, 1)
    out = run([source], 3, tokenizer, embeddings, p_mask=0, p_pos_replace=1, p_ngram=0, neighbours=1)
    expected = " ".join(NEAREST.get(w, w) for w in source.text_a.split())
    assert expected == "a cinematography of a film was great"
    assert [e.text_a for e in out] == [expected] * 3


def test_p_ngram_one_keeps_a_contiguous_bigram(tokenizer, embeddings):
    source = "the movie was good but the plot was bad"
    out = run([Example(source, None, 1), Example("fine", None, 1)], 30, tokenizer, embeddings,
              p_mask=0, p_pos_replace=0, p_ngram=1, ngram_range=(2, 2))  # fmt: skip
    words = source.split()
    bigrams = {" ".join(words[i : i + 2]) for i in range(len(words) - 1)}
    assert {e.text_a for e in out[:30]} <= bigrams
    assert len({e.text_a for e in out[:30]}) > 1  # the start position varies
    assert {e.text_a for e in out[30:]} == {"fine"}  # clipped to the sentence length


def test_pairs_augment_both_sides(tokenizer, embeddings):
    out = run(PAIRED, 2, tokenizer, embeddings, p_mask=0, p_pos_replace=1, p_ngram=0, neighbours=1)
    assert [(e.text_a, e.text_b) for e in out] == [("a story was good", "the movie")] * 2
    masked = run(PAIRED, 1, tokenizer, embeddings, p_mask=1, p_ngram=0)
    assert (masked[0].text_a, masked[0].text_b) == ("[MASK] [MASK] [MASK] [MASK]", "[MASK] [MASK]")


def test_settings_are_plain_json_and_round_trip():
    settings = AugmentSettings(n=3, seed=7, ngram_range=(2, 4))
    data = json.loads(json.dumps(settings.as_dict()))
    assert data == {"n": 3, "seed": 7, "p_mask": 0.1, "p_pos_replace": 0.1, "p_ngram": 0.25,
                    "ngram_range": [2, 4], "neighbours": 5}  # fmt: skip
    assert AugmentSettings.from_dict(data) == settings
    assert "n" not in settings.augment_kwargs() and settings.augment_kwargs()["seed"] == 7


@pytest.mark.parametrize(
    "bad",
    [{"n": -1}, {"p_mask": 1.5}, {"p_pos_replace": -0.1}, {"p_ngram": float("nan")}, {"ngram_range": (0, 2)},
     {"ngram_range": (3, 2)}, {"neighbours": 0}],  # fmt: skip
)
def test_invalid_settings_raise_a_one_line_user_error_naming_the_setting(tokenizer, embeddings, bad):
    kwargs = {"n": 2, **bad}
    with pytest.raises(UserError) as error:
        augment(SINGLES, tokenizer=tokenizer, word_embeddings=embeddings, **kwargs)
    message = str(error.value)
    assert repr(next(iter(bad))) in message and "\n" not in message


def test_unknown_settings_key_is_rejected():
    with pytest.raises(UserError, match="'p_swap'"):
        AugmentSettings.from_dict({"n": 1, "p_swap": 0.5})
