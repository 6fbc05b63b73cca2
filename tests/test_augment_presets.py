"""Augmentation presets (kd/augment_presets.yaml) and what they need: per-task counts, a separate
substitution rate for sentence pairs, words a pair shares changed alike, and masked-LM substitutes
(issue 11)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import VOCAB, minilm_folder
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertTokenizerFast

from kd.augment import AugmentSettings, augment, augment_with_settings
from kd.augment_mlm import MaskedLMSubstitutes, load_masked_lm
from kd.augment_presets import preset_about, preset_names, preset_settings
from kd.knowledge import Knowledge, KnowledgeConfig
from kd.knowledge_manifest import check_manifest
from nas.base.errors import UserError
from nas.data.glue_io import Example


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    """A random BertForMaskedLM with conftest's word-level vocabulary: a complete MLM head, saved."""
    folder = tmp_path_factory.mktemp("mlm")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.5)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher_parts(tiny_teacher):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher))
    return AutoTokenizer.from_pretrained(str(tiny_teacher)), model.get_input_embeddings().weight.detach()


# ----- the presets as data

def test_the_three_papers_presets_are_there():
    assert {"tang2019", "adabert", "tinybert"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_each_preset_validates_says_where_it_comes_from_and_round_trips(name):
    settings = preset_settings(name)
    assert settings.preset == name and settings.n >= 1
    assert preset_about(name).strip()
    data = json.loads(json.dumps(settings.as_dict()))
    assert AugmentSettings.from_dict(data) == settings
    assert data["preset"] == name


def test_presets_hold_the_papers_numbers():
    tang = preset_settings("tang2019")
    assert (tang.n, tang.p_mask, tang.p_pos_replace, tang.p_ngram, tang.ngram_range) == (20, 0.1, 0.1, 0.25, (1, 5))
    adabert = preset_settings("adabert")
    assert (adabert.n, adabert.substitution_probability(False), adabert.substitution_probability(True)) == (20, 0.4, 0.3)
    tinybert = preset_settings("tinybert")
    assert tinybert.source == "mlm" and tinybert.p_pos_replace == 0.4


def test_per_task_multiplier():
    tinybert = preset_settings("tinybert")
    assert {task: tinybert.for_task(task).n for task in ("sst2", "mrpc", "rte", "stsb", "cola")} == {
        "sst2": 20, "mrpc": 30, "rte": 30, "stsb": 30, "cola": 30}
    assert tinybert.for_task("sst2").for_task("sst2").n == 20  # resolving twice changes nothing
    # Through the knowledge settings: the preset's count per task, unless --augment says otherwise.
    assert KnowledgeConfig(augment_preset="tinybert", augment_source="embedding").augment_settings("mrpc").n == 30
    explicit = KnowledgeConfig(augment_preset="tinybert", augment=5, augment_source="embedding")
    assert explicit.augment_settings("sst2").n == explicit.augment_settings("mrpc").n == 5


def test_explicit_settings_override_the_presets():
    config = KnowledgeConfig(augment_preset="tang2019", p_mask=0.0, augment_seed=3)
    settings = config.augment_settings("sst2")
    assert (settings.p_mask, settings.seed, settings.p_ngram, settings.n, settings.preset) == (0.0, 3, 0.25, 20, "tang2019")
    assert KnowledgeConfig(augment_preset="adabert", p_pos_replace_pair=0.1).augment_settings("mrpc").p_pos_replace_pair == 0.1
    # No preset: the defaults, as before presets existed.
    assert KnowledgeConfig(augment=4).augment_settings("sst2") == AugmentSettings(n=4)
    assert KnowledgeConfig().augment_settings("sst2").n == 0


@pytest.mark.parametrize("kwargs, fragment", [
    ({"augment_preset": "bert2018"}, "'augment_preset': unknown preset 'bert2018' (known: adabert"),
    ({"augment_source": "glove"}, "'augment_source'"),
    ({"p_pos_replace_pair": 1.5}, "'p_pos_replace_pair'"),
    ({"mlm": "somewhere", "augment_source": "embedding"}, "'mlm'"),
])
def test_bad_augmentation_settings_are_one_line(kwargs, fragment):
    with pytest.raises(UserError) as error:
        KnowledgeConfig(**kwargs)
    assert fragment in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("bad", [{"n_by_task": {"sst2": -1}}, {"n_by_task": [("sst2",)]}, {"n_by_task": 3},
                                 {"source": "bert"}, {"p_pos_replace_pair": "half"}, {"pair_shared_words": "yes"}])
def test_bad_preset_fields_are_refused(bad):
    with pytest.raises(UserError):
        AugmentSettings(n=1, **bad)


def test_settings_from_before_presets_load_with_the_old_meaning():
    old = {"n": 3, "seed": 0, "p_mask": 0.1, "p_pos_replace": 0.1, "p_ngram": 0.25, "ngram_range": [1, 5], "neighbours": 5}
    settings = AugmentSettings.from_dict(old)
    assert (settings.source, settings.p_pos_replace_pair, settings.n_by_task, settings.preset) == ("embedding", None, (), "")
    assert settings.as_dict() == old  # and they record as they did


# ----- pairs substitute at their own rate

def substituted_share(examples, settings, tokenizer, embeddings) -> float:
    """The share of words that changed; with neither masks nor n-grams, a change is a substitution."""
    out = augment(examples, tokenizer=tokenizer, word_embeddings=embeddings, **{"n": settings.n, **settings.augment_kwargs()})
    changed = total = 0
    for i, variant in enumerate(out):
        source = examples[i // settings.n]
        for before, after in ((source.text_a, variant.text_a), (source.text_b, variant.text_b)):
            if before is not None:
                pairs = list(zip(before.split(), after.split()))
                changed += sum(a != b for a, b in pairs)
                total += len(pairs)
    return changed / total


def test_single_sentences_and_pairs_substitute_at_their_own_rates(teacher_parts):
    tokenizer, embeddings = teacher_parts
    words = [w for w in VOCAB if not w.startswith("[")]  # every one has neighbours in the tiny vocabulary
    singles = [Example(" ".join(words[i : i + 6]), None, 0) for i in range(0, len(words) - 6)]
    pairs = [Example(e.text_a, e.text_a, 0) for e in singles]
    settings = AugmentSettings(n=100, seed=1, p_mask=0, p_ngram=0, p_pos_replace=0.4, p_pos_replace_pair=0.15)
    # ~11,000 single words and ~22,000 pair words: a binomial share's standard error is about 0.005.
    assert substituted_share(singles, settings, tokenizer, embeddings) == pytest.approx(0.4, abs=0.02)
    assert substituted_share(pairs, settings, tokenizer, embeddings) == pytest.approx(0.15, abs=0.02)
    # Without a pair rate, pairs substitute at the single-sentence rate.
    same = AugmentSettings(n=100, seed=1, p_mask=0, p_ngram=0, p_pos_replace=0.4)
    assert substituted_share(pairs, same, tokenizer, embeddings) == pytest.approx(0.4, abs=0.02)


# ----- words a pair shares change alike

@pytest.mark.parametrize("p_mask", [0.0, 0.2])
def test_a_word_in_both_sentences_of_a_pair_changes_the_same_way_in_both(teacher_parts, p_mask):
    tokenizer, embeddings = teacher_parts
    words = [w for w in VOCAB if not w.startswith("[")]
    # Each pair shares its middle three words; the first and second sentence add two of their own.
    pairs = [Example(" ".join(words[i : i + 5]), " ".join(words[i + 1 : i + 4] + words[i + 6 : i + 8]), 0)
             for i in range(0, len(words) - 8)]
    settings = AugmentSettings(n=50, seed=3, p_mask=p_mask, p_ngram=0, p_pos_replace=0.4, pair_shared_words=True)
    out = augment_with_settings(pairs, settings, tokenizer=tokenizer, word_embeddings=embeddings)
    shared_changed = own_changed = 0
    for i, variant in enumerate(out):
        a, b = variant.text_a.split(), variant.text_b.split()
        source_a, source_b = pairs[i // 50].text_a.split(), pairs[i // 50].text_b.split()
        assert a[1:4] == b[:3]  # the shared words, whatever each became, alike in both
        shared_changed += sum(x != y for x, y in zip(a[1:4], source_a[1:4]))
        own_changed += sum(x != y for x, y in zip(a[:1] + a[4:] + b[3:], source_a[:1] + source_a[4:] + source_b[3:]))
    # Shared words still change at the pair's rate (masked, else substituted), and the others too.
    rate = p_mask + (1 - p_mask) * 0.4
    assert shared_changed / (3 * len(out)) == pytest.approx(rate, abs=0.03)
    assert own_changed / (4 * len(out)) == pytest.approx(rate, abs=0.03)
    # Drawn independently (the default), the shared words often differ between the sentences.
    apart = augment_with_settings(pairs, replace(settings, pair_shared_words=False), tokenizer=tokenizer,
                                  word_embeddings=embeddings)
    assert sum(v.text_a.split()[1:4] != v.text_b.split()[:3] for v in apart) > len(apart) / 2


def test_shared_words_record_only_when_set_and_reach_the_knowledge_settings():
    assert "pair_shared_words" not in AugmentSettings(n=1).as_dict()  # older manifests keep their key
    assert AugmentSettings(n=1, pair_shared_words=True).as_dict()["pair_shared_words"] is True
    config = KnowledgeConfig(augment_preset="adabert", pair_shared_words=True)
    assert config.augment_settings("mrpc").pair_shared_words is True
    assert KnowledgeConfig(augment_preset="adabert").augment_settings("mrpc").pair_shared_words is False


# ----- masked-LM substitutes

def test_mlm_candidates_are_the_models_top_whole_words_for_the_masked_position(tiny_mlm):
    model, tokenizer = load_masked_lm(tiny_mlm)
    source = MaskedLMSubstitutes(model, tokenizer, k=3)
    text = "the movie was good , very good"
    candidates = source.candidates(text)
    assert len(candidates) == 7 and candidates[4] == []  # "," is not alphabetic: no substitutes
    # Recomputed by hand for word 3 ("good"): masked sentence, then the original as segment B.
    masked = "the movie was [MASK] , very good"
    inputs = tokenizer(masked, text, return_tensors="pt")
    position = inputs["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    with torch.no_grad():
        scores = model(**inputs).logits[0, position]  # (V,)
    allowed = [i for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(VOCAB)))))
               if token.isalpha() and token not in tokenizer.all_special_tokens and token != "good"]
    best = sorted(allowed, key=lambda i: -scores[i].item())[:3]
    assert candidates[3] == tokenizer.convert_ids_to_tokens(best)
    for i, word in enumerate(text.split()):
        assert word not in candidates[i] and all(c.isalpha() and not c.startswith("[") for c in candidates[i])
    # Batched with other sentences, the same answers.
    other = MaskedLMSubstitutes(model, tokenizer, k=3, batch_size=2)
    other.prepare(["a dull plot", text, "fun"])
    assert other.candidates(text) == candidates


def test_mlm_source_substitutes_every_alphabetic_word_from_its_candidates(tiny_mlm, teacher_parts):
    tokenizer, embeddings = teacher_parts
    source = MaskedLMSubstitutes(*load_masked_lm(tiny_mlm), k=4)
    examples = [Example("the plot was dull , and boring", None, 0), Example("a fun film", "a fine story", 1)]
    out = augment(examples, 3, tokenizer=tokenizer, word_embeddings=embeddings, mlm=source, source="mlm",
                  p_mask=0, p_ngram=0, p_pos_replace=1.0)
    for i, variant in enumerate(out):
        original = examples[i // 3]
        for before, after in ((original.text_a, variant.text_a), (original.text_b, variant.text_b)):
            if before is None:
                continue
            for word, new, choices in zip(before.split(), after.split(), source.candidates(before)):
                assert new == word if not choices else new in choices


def test_mlm_source_without_a_model_is_a_user_error(teacher_parts):
    tokenizer, embeddings = teacher_parts
    with pytest.raises(UserError, match="masked language model"):
        augment([Example("a fun film", None, 1)], 2, tokenizer=tokenizer, word_embeddings=embeddings, source="mlm")


def test_a_classifier_teacher_has_no_mlm_head(run_cli, prepared, tiny_glue, tmp_path):
    teacher, _ = prepared["sst2"]
    code, _, err = run_cli("knowledge", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
                           "--out", tmp_path / "k", "--device", "cpu", "--augment-preset", "tinybert")
    assert code == 2
    assert "no masked-LM head" in err and "--mlm MODEL_DIR" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "k").exists() and not list(tmp_path.iterdir())  # stopped before any work


def test_a_missing_mlm_folder_is_one_line(run_cli, prepared, tiny_glue, tmp_path):
    teacher, _ = prepared["sst2"]
    code, _, err = run_cli("knowledge", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
                           "--out", tmp_path / "k", "--device", "cpu", "--augment", 2, "--mlm", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_the_minilm_package_has_no_mlm_head():
    folder = minilm_folder()
    if folder is None:
        pytest.skip("the MiniLM package is not installed")
    with pytest.raises(UserError, match="no masked-LM head"):
        load_masked_lm(folder)


# ----- through `nas knowledge`: the manifest records the preset, and reads back

@pytest.mark.parametrize("name", preset_names())
def test_each_preset_builds_knowledge_and_round_trips_through_the_manifest(name, run_cli, prepared, tiny_glue,
                                                                           tiny_mlm, tmp_path):
    teacher, _ = prepared["mrpc"]
    out = tmp_path / "k"
    mlm = ("--mlm", tiny_mlm) if preset_settings(name).source == "mlm" else ()
    code, stdout, err = run_cli("knowledge", "--task", "mrpc", "--data-dir", tiny_glue, "--teacher", teacher,
                                "--out", out, "--device", "cpu", "--max-train", 8, "--augment-preset", name, *mlm)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    check_manifest(manifest, out / "manifest.json")
    recorded = AugmentSettings.from_dict(manifest["inputs"]["augmentation"])
    assert recorded == preset_settings(name).for_task("mrpc")
    assert manifest["inputs"]["config"]["augment_preset"] == name
    assert manifest["splits"]["augmented"] == 8 * recorded.n
    assert ("mlm_hash" in manifest["inputs"]) == bool(mlm)
    knowledge = Knowledge(out)
    assert len(knowledge.augmented_examples()) == 8 * recorded.n
    # The same command again reuses the folder: the recorded settings are the ones asked for.
    code, stdout, _ = run_cli("knowledge", "--task", "mrpc", "--data-dir", tiny_glue, "--teacher", teacher,
                              "--out", out, "--device", "cpu", "--max-train", 8, "--augment-preset", name, *mlm)
    assert code == 0 and "reused" in stdout
