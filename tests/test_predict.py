"""`nas predict`: a round trip over TSV, CSV and JSONL with a tiny student (and a teacher), in the
input's order, with predictions equal to the model's own; bad rows are one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

SENTENCES = ["the film was good", "bad", "the plot was very dull and boring but the story was fun", "a lovely movie",
             "quite weak", "superb and fun", "the story is poor"]


def expected_probabilities(folder, texts):
    """Each row run alone (no padding, no sorting): what batched prediction must reproduce."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(*text, return_tensors="pt")
            rows.append(torch.softmax(model(**inputs).logits[0], -1))
    return torch.stack(rows), model.config.id2label


def write_input(path, header, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
    else:
        path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")


def read_output(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as handle:
        if path.suffix == ".csv":
            return list(csv.DictReader(handle))
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_round_trip_keeps_rows_and_order_and_matches_the_model(finetuned, run_cli, tmp_path, suffix):
    folder = finetuned["sst2"]
    source, out = tmp_path / f"rows{suffix}", tmp_path / f"predicted{suffix}"
    rows = [[i, text, "x" if i % 2 else "y"] for i, text in enumerate(SENTENCES)]
    write_input(source, ["id", "sentence", "extra"], rows)
    # Batches of 3: several length-sorted batches, padded, and put back in input order.
    code, text, err = run_cli("predict", "--model", folder, "--input", source, "--out", out, "--batch-size", 3,
                              "--device", "cpu")
    assert code == 0, err
    written = read_output(out)
    probabilities, id2label = expected_probabilities(folder, [(s,) for s in SENTENCES])
    labels = [id2label[i] for i in range(len(id2label))]
    assert len(written) == len(SENTENCES)
    for row, expected, source_row in zip(written, probabilities, rows):
        assert [str(row[k]) for k in ("id", "sentence", "extra")] == [str(v) for v in source_row]
        assert row["prediction"] == labels[int(expected.argmax())]
        got = torch.tensor([float(row[f"prob_{label}"]) for label in labels])
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert f"predict: {len(SENTENCES)} rows" in text


def test_pairs_and_a_teacher_folder_with_text_columns(prepared, run_cli, tmp_path):
    teacher = prepared["mrpc"][0]
    source, out = tmp_path / "pairs.tsv", tmp_path / "out.tsv"
    pairs = [(SENTENCES[i], SENTENCES[-1 - i]) for i in range(5)]
    write_input(source, ["left", "right"], pairs)
    code, _, err = run_cli("predict", "--model", teacher, "--input", source, "--out", out, "--text-columns", "left,right",
                           "--device", "cpu")
    assert code == 0, err
    probabilities, id2label = expected_probabilities(teacher, pairs)
    for row, expected in zip(read_output(out), probabilities):
        assert row["prediction"] == id2label[int(expected.argmax())]


def test_a_regression_model_writes_a_score(tiny_teacher, run_cli, tmp_path):
    from searchspace.random_arch import random_genotypes
    from searchspace.student import compile_genotype

    folder = tmp_path / "regression"
    genotype = random_genotypes(3, 1, hidden_size=16, max_depth=2, max_cells=2)[0]
    model = compile_genotype(genotype, vocab_size=40, max_positions=64, num_labels=1, pair=False).eval()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_teacher).save_pretrained(folder)
    source, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    write_input(source, ["text"], [[s] for s in SENTENCES[:3]])
    code, _, err = run_cli("predict", "--model", folder, "--input", source, "--out", out, "--text-columns", "text")
    assert code == 0, err
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for row, sentence in zip(read_output(out), SENTENCES):
        with torch.no_grad():
            expected = model(**tokenizer(sentence, return_tensors="pt")).logits[0, 0].item()
        assert set(row) == {"text", "score"} and row["score"] == pytest.approx(expected, abs=1e-5)


BAD_INPUTS = [
    ("rows.tsv", "sentence\tother\nfine film\t1\ntoo\tmany\tcolumns\n", "rows.tsv:3: expected 2 columns, found 3"),
    ("rows.tsv", "text\tother\nfine\t1\n", "rows.tsv:1: header has no column 'sentence'"),
    ("rows.csv", "sentence,id\ngood,1\n\"  \",2\n", "rows.csv:3: column 'sentence' is empty"),
    ("rows.jsonl", '{"sentence": "good"}\n{"sentence": \n', "rows.jsonl:2: not valid JSON"),
    ("rows.jsonl", '{"sentence": "good"}\n["a list"]\n', "rows.jsonl:2: expected a JSON object"),
    ("rows.jsonl", '{"text": "good"}\n', "rows.jsonl:1: no key 'sentence'"),
    ("rows.tsv", "sentence\n", "rows.tsv: no rows to predict"),
]


@pytest.mark.parametrize("name, content, message", BAD_INPUTS)
def test_bad_rows_are_one_line_errors_and_nothing_is_written(finetuned, run_cli, tmp_path, name, content, message):
    source, out = tmp_path / name, tmp_path / "out.tsv"
    source.write_text(content)
    code, _, err = run_cli("predict", "--model", finetuned["sst2"], "--input", source, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert message in err
    assert not out.exists()


def test_a_model_without_a_recorded_task_needs_columns(prepared, run_cli, tmp_path, tiny_teacher):
    source = tmp_path / "rows.tsv"
    write_input(source, ["sentence"], [["good"]])
    code, _, err = run_cli("predict", "--model", tiny_teacher, "--input", source, "--out", tmp_path / "o.tsv")
    assert code == 2 and "--task or --text-columns" in err
    code, _, err = run_cli("predict", "--model", tmp_path, "--input", source, "--out", tmp_path / "o.tsv")
    assert code == 2 and "no config.json" in err
