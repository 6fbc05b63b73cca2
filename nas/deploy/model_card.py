"""The model card: a student folder's README.md, written from the folder's own records.

Every number comes from `metrics.json` (what `nas finetune` measured) and the architecture from
`arch.json`, so the card cannot disagree with them; a test reads the numbers back. The cell is
drawn beside the card (`cell.svg` when graphviz' `dot` is installed, else its DOT source).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nas.base import atomic
from nas.data.model_metrics import METRICS, StudentMetrics
from searchspace.drawing import render
from searchspace.genotype import Genotype

CARD = "README.md"


def fmt_metric(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def fmt_count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"


def fmt_ms(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def shown(value, missing: str = "n/a"):
    return missing if value is None else value


def ratio(slow, fast) -> str:
    return f"{slow / fast:.2f}" if fast else "n/a"


def onnx_note(onnx: dict | None) -> list[str]:
    if not onnx:
        return ["No ONNX file: the `deploy` extra was not installed when the student was made "
                "(`nas export --format onnx` writes one).", ""]
    if not onnx.get("file"):
        return [f"No ONNX file: {onnx['error']}", ""]
    return [f"`{onnx['file']}` gives the PyTorch model's logits within {onnx['max_abs_difference']:.2e} "
            f"(largest absolute difference over {onnx['rows_checked']} dev rows); its latency is ONNX Runtime's "
            "on the CPU, timed beside the PyTorch student.", ""]


def onnx_snippet(onnx: dict | None) -> list[str]:
    if not onnx or not onnx.get("file"):
        return []
    feeds = ", ".join(f'"{name}": inputs["{name}"]' for name in onnx["inputs"])
    return [
        "With ONNX Runtime (the tokenizer still comes from transformers):",
        "",
        "```python",
        "import onnxruntime",
        "from transformers import AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        f'session = onnxruntime.InferenceSession("THIS_FOLDER/{onnx["file"]}", providers=["CPUExecutionProvider"])',
        'inputs = tokenizer(["a gripping film"], return_tensors="np", return_token_type_ids=True)',
        f"logits = session.run(None, {{{feeds}}})[0]",
        "```",
        "",
    ]


def draw_cell(folder: Path, genotype) -> str:
    """Draw the cell into the folder; the Markdown that shows it (or says where its source is)."""

    if shutil.which("dot"):
        render(genotype, folder / "cell.svg")
        return "![the searched cell](cell.svg)"
    render(genotype, folder / "cell.dot")
    return ("The cell's drawing is in `cell.dot` (graphviz source; `dot -Tsvg cell.dot -o cell.svg` renders it, "
            "as does `nas plot arch.json`).")


def card_text(folder: Path, drawing: str) -> str:

    record = StudentMetrics.load(folder / METRICS)
    genotype = Genotype.load(folder / "arch.json")
    provenance = record.provenance or {}
    student, teacher = record.student, record.teacher
    teacher_metrics = record.teacher_metrics or {}
    task = record.task

    lines = [
        f"# AdaBERT student for {task}",
        "",
        f"A {genotype.num_cells}-cell convolutional student (hidden size {genotype.hidden_size}) found by differentiable "
        "architecture search with knowledge distillation (AdaBERT) and trained by distillation from its teacher, "
        "with [adabert-nas](https://arxiv.org/abs/2001.04246).",
        "",
        f"- Task: `{task}` (primary metric: {record.primary_metric})",
        f"- Teacher: `{provenance.get('teacher', 'unknown')}`",
        f"- Genotype: `{genotype}`",  # a code span outside a table: no escaping
        "",
        "## Architecture",
        "",
        drawing,
        "",
        "## Results on the dev set",
        "",
        "| metric | student | teacher |",
        "| --- | --- | --- |",
    ]
    for name, value in record.metrics.items():
        if name == "loss":
            continue
        lines.append(f"| {name} | {fmt_metric(value)} | {fmt_metric(teacher_metrics.get(name))} |")
    lines += [
        "",
        "## Size and speed",
        "",
        "| | student | teacher | teacher / student |",
        "| --- | --- | --- | --- |",
        f"| params | {fmt_count(student.params)} | {fmt_count(teacher.params)} | "
        f"{shown(record.compression)}x |",
        f"| FLOPs (one sequence of {shown(record.flops_seq_len)} tokens) | {fmt_count(student.flops)} | "
        f"{fmt_count(teacher.flops)} | |",
        f"| latency, batch 1 (ms) | {fmt_ms(student.ms(1))} | {fmt_ms(teacher.ms(1))} | "
        f"{shown(record.speedup_at(1))}x |",
        f"| latency, batch 32 (ms) | {fmt_ms(student.ms(32))} | {fmt_ms(teacher.ms(32))} | "
        f"{shown(record.speedup_at(32))}x |",
    ]
    onnx = record.onnx
    if onnx and onnx.get("file"):
        ort, torch_ms = onnx["latency_ms"]["onnxruntime"], onnx["latency_ms"]["pytorch"]
        lines += [
            f"| ONNX Runtime latency, batch 1 (ms) | {fmt_ms(ort['batch_1_ms'])} | | "
            f"{ratio(torch_ms['batch_1_ms'], ort['batch_1_ms'])}x faster than PyTorch ({fmt_ms(torch_ms['batch_1_ms'])}) |",
            f"| ONNX Runtime latency, batch 32 (ms) | {fmt_ms(ort['batch_32_ms'])} | | "
            f"{ratio(torch_ms['batch_32_ms'], ort['batch_32_ms'])}x faster than PyTorch ({fmt_ms(torch_ms['batch_32_ms'])}) |",
        ]
    lines += [
        "",
        f"Latency was measured on {shown(record.latency_device)} with {shown(record.latency_threads)} "
        f"threads ({provenance.get('machine', 'machine not recorded')}), on {provenance.get('date', 'n/a')}, "
        "student and teacher in the same process on dev batches.",
        "",
        *onnx_note(onnx),
        "## How it was made",
        "",
        "```bash",
        provenance.get("command") or "nas finetune (command line not recorded)",
        "```",
        "",
        f"adabert-nas {provenance.get('package_version', '?')}, git commit {provenance.get('git_commit') or 'unknown'}, "
        f"torch {provenance.get('torch', '?')}; architecture from `{provenance.get('arch', 'arch.json')}`. "
        f"Best epoch {shown(record.best_epoch)} of training on {shown(record.train_rows)} rows "
        f"({shown(record.train_seconds)} s). Everything above is read from `metrics.json` and `arch.json`.",
        "",
        "## How to load it",
        "",
        "Anywhere with torch and transformers (the folder carries its modelling code):",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
        "```",
        "",
        "(The tokenizer is the teacher's, a standard one; transformers reads the model's config on the way and, "
        "without `trust_remote_code=True`, asks whether to run the folder's code before loading it anyway.)",
        "",
        "With adabert-nas installed, `import nas` registers the student and `trust_remote_code` is not needed:",
        "",
        "```python",
        "import nas  # noqa: F401",
        "from transformers import AutoModelForSequenceClassification",
        "",
        'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER")',
        "```",
        "",
        *onnx_snippet(onnx),
        "Or from the command line: `nas predict --model THIS_FOLDER --input rows.tsv --out predictions.tsv`, and "
        "`nas export --model THIS_FOLDER --format onnx --out student.onnx`.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder) -> Path:
    """Write README.md (and the cell drawing) into a student folder holding metrics.json and arch.json."""

    folder = Path(folder)
    drawing = draw_cell(folder, Genotype.load(folder / "arch.json"))
    return atomic.write_text(folder / CARD, card_text(folder, drawing))
