"""The student folder's README.md: its numbers are metrics.json's, and it says how to load the model."""

from __future__ import annotations

import json
import re

import pytest

from nas.deploy.model_card import card_text, write_model_card


def table_rows(card: str, heading: str) -> dict[str, list[str]]:
    """{first cell: other cells} of the Markdown table under `## heading`."""
    section = card.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(re.match(r"[-\d.,]+", cell).group(0).replace(",", ""))


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_the_cards_numbers_are_those_of_metrics_json(finetuned, task):
    folder = finetuned[task]
    card = (folder / "README.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    results = table_rows(card, "Results on the dev set")
    shown = [name for name in metrics["metrics"] if name != "loss"]
    assert shown and set(results) == {"metric", *shown}
    for name in shown:
        assert number(results[name][0]) == pytest.approx(metrics["metrics"][name], abs=5e-5)
        assert number(results[name][1]) == pytest.approx(metrics["teacher_metrics"][name], abs=5e-5)
    sizes = table_rows(card, "Size and speed")
    assert number(sizes["params"][0]) == metrics["student"]["params"]
    assert number(sizes["params"][1]) == metrics["teacher"]["params"]
    assert number(sizes["params"][2]) == metrics["compression"]
    flops = next(v for k, v in sizes.items() if k.startswith("FLOPs"))
    assert number(flops[0]) == metrics["student"]["flops"] and number(flops[1]) == metrics["teacher"]["flops"]
    for batch in (1, 32):
        row = sizes[f"latency, batch {batch} (ms)"]
        assert number(row[0]) == pytest.approx(metrics["student"][f"batch_{batch}_ms"], abs=5e-4)
        assert number(row[1]) == pytest.approx(metrics["teacher"][f"batch_{batch}_ms"], abs=5e-4)
        assert number(row[2]) == metrics["speedup"][f"batch_{batch}_speedup"]
    onnx = metrics.get("onnx")
    if onnx is not None:  # written when the deploy extra is installed
        assert (folder / onnx["file"]).is_file() and onnx["max_abs_difference"] <= 1e-4
        assert f"{onnx['max_abs_difference']:.2e}" in card
        for batch in (1, 32):
            row = sizes[f"ONNX Runtime latency, batch {batch} (ms)"]
            ort, pytorch = onnx["latency_ms"]["onnxruntime"][f"batch_{batch}_ms"], onnx["latency_ms"]["pytorch"][f"batch_{batch}_ms"]
            assert number(row[0]) == pytest.approx(ort, abs=5e-4)
            assert number(row[2]) == pytest.approx(pytorch / ort, abs=5e-3)
        assert "onnxruntime.InferenceSession" in card
    assert metrics["provenance"]["machine"] in card
    assert metrics["provenance"]["command"].startswith("nas finetune --task " + task)
    assert metrics["provenance"]["command"] in card
    assert f"Genotype: `{metrics['genotype']}`" in card
    assert "trust_remote_code=True" in card and "import nas" in card
    assert (folder / "cell.svg").is_file() or (folder / "cell.dot").is_file()


def test_the_card_follows_the_records(finetuned, tmp_path):
    """Change metrics.json and the card changes with it: nothing in it is fixed text."""
    import shutil

    folder = tmp_path / "student"
    shutil.copytree(finetuned["sst2"], folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["metrics"]["accuracy"] = 0.123456
    metrics["student"]["params"] = 4242
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_model_card(folder)
    card = (folder / "README.md").read_text()
    assert number(table_rows(card, "Results on the dev set")["accuracy"][0]) == 0.1235
    assert number(table_rows(card, "Size and speed")["params"][0]) == 4242
    assert card == card_text(folder, card.split("## Architecture\n\n", 1)[1].split("\n", 1)[0])
