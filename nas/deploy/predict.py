"""`nas predict`: label a TSV/CSV/JSONL file with any sequence-classification folder.

The model is a student from `nas finetune`, a teacher from `nas teacher`, or any Hugging Face
classifier folder. Rows are read with the training data's readers (so a bad row gets the same
one-line error), tokenised once, run in batches of similar length (little padding) and written
back in their input order: each input row, then the predicted label and one probability per
label, or the score of a regression.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nas.base import atomic
from nas.base.errors import UserError, where
from nas.data.glue_io import read_fields
from nas.data.models import load_tokenizer
from nas.data.tasks import Task


@dataclass(frozen=True)
class Rows:
    """What was read: each row's fields (for writing back) and its one or two texts."""

    columns: list[str]
    fields: list[dict]
    texts: list[tuple[str, ...]]


def input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return "jsonl" if suffix in (".jsonl", ".json") else "csv" if suffix == ".csv" else "tsv"


def reading_task(text_columns: tuple, task: Task | None, path: Path) -> Task:
    """A task that reads `path`: the given task's columns and header convention, the file's delimiter."""
    kind = input_format(path)
    base = task if task is not None else Task("predict", "", text_columns, None, None, ())
    return replace(base, text_columns=tuple(text_columns), delimiter="," if kind == "csv" else "\t",
                   quoted=kind == "csv" or base.quoted)


def read_rows(path, text_columns: tuple, task: Task | None = None) -> Rows:
    """Rows of a TSV/CSV (header row naming the text columns) or JSONL file (one object per line)."""

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if input_format(path) == "jsonl":
        fields = list(_jsonl_rows(path, text_columns))
    else:
        fields = [row for _, row in _checked(read_fields(path, reading_task(text_columns, task, path)), path, text_columns)]
    if not fields:
        raise UserError(f"{path}: no rows to predict")
    columns = list(fields[0])
    texts = [tuple(str(row[c]).strip() for c in text_columns) for row in fields]
    return Rows([str(c) for c in columns], fields, texts)


def _checked(rows, path: Path, text_columns):
    """An empty text column is a broken row, not a sentence: say which line."""
    for line, row in rows:
        for column in text_columns:
            if not str(row[column]).strip():
                raise UserError(f"{where(path, line)}: column {column!r} is empty")
        yield line, row


def _jsonl_rows(path: Path, text_columns):
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise UserError(f"{where(path, line)}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{where(path, line)}: expected a JSON object, found {type(row).__name__}")
            for column in text_columns:
                if column not in row:
                    raise UserError(f"{where(path, line)}: no key {column!r} (found: {', '.join(row) or 'none'})")
                if not isinstance(row[column], str) or not row[column].strip():
                    raise UserError(f"{where(path, line)}: {column!r} must be a non-empty string")
            yield row


def predict_logits(model, tokenizer, texts: list[tuple[str, ...]], *, batch_size: int, max_length: int, device,
                   progress: bool = True) -> torch.Tensor:
    """(N, C) logits in input order; rows run in batches sorted by length so padding stays small."""
    from tqdm import tqdm

    pair = len(texts[0]) == 2
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if pair else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    model.eval().to(device)
    # Some classifiers (DistilBERT) take no token_type_ids; give each model only what it accepts.
    accepted = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in inspect.signature(model.forward).parameters]
    logits = [None] * len(texts)
    with torch.no_grad():
        for batch in tqdm(batches, desc="predict", unit="batch", disable=not progress, leave=False):
            features = [{key: encoded[key][i] for key in accepted} for i in batch]
            inputs = {k: v.to(device) for k, v in tokenizer.pad(features, return_tensors="pt").items()}
            out = model(**inputs).logits.float().cpu()  # (B, C)
            for row, value in zip(batch, out):
                logits[row] = value
    return torch.stack(logits)  # (N, C)


def prediction_columns(logits: torch.Tensor, id2label: dict) -> tuple[list[str], list[list]]:
    """Column names and per-row values: label and probabilities, or the regression score."""
    if logits.shape[1] == 1:
        return ["score"], [[round(v, 6)] for v in logits[:, 0].tolist()]
    labels = [str(id2label.get(i, i)) for i in range(logits.shape[1])]
    probabilities = torch.softmax(logits, -1)  # (N, C)
    names = ["prediction"] + [f"prob_{label}" for label in labels]
    values = [[labels[int(p.argmax())]] + [round(x, 6) for x in p.tolist()] for p in probabilities]
    return names, values


def render_output(path: Path, rows: Rows, names: list[str], values: list[list]) -> str:
    columns = rows.columns + [n for n in names if n not in rows.columns]
    records = [{**{str(k): v for k, v in fields.items()}, **dict(zip(names, vals))}
               for fields, vals in zip(rows.fields, values)]
    kind = input_format(path)
    if kind == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    buffer = io.StringIO()
    if kind == "csv":
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[record.get(c, "") for c in columns] for record in records])
        return buffer.getvalue()
    # TSV as GLUE writes it (no quoting), so the file reads back with the same readers; a tab or
    # line break inside a text (possible only from CSV/JSONL input) would break that, so it becomes a space.
    lines = ["\t".join(columns)]
    for record in records:
        lines.append("\t".join(" ".join(str(record.get(c, "")).split("\t")).replace("\n", " ") for c in columns))
    return "\n".join(lines) + "\n"


def run_predict(model_dir, input_path, out_path, *, text_columns: tuple, task: Task | None, device,
                batch_size: int = 64, max_length: int | None = None, progress: bool = True) -> dict:
    from transformers import AutoModelForSequenceClassification


    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json)")
    rows = read_rows(input_path, text_columns, task)
    tokenizer = load_tokenizer(str(model_dir))
    import searchspace.student  # registers the student with transformers (the `nas` command only here)

    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        raise UserError(f"{model_dir}: cannot load a sequence classifier ({str(error).strip().splitlines()[0]})") from None
    if isinstance(model, searchspace.student.AdaBertStudentForSequenceClassification):
        model = model.for_inference()  # a folder saved before `nas finetune` folded its word vectors
    if getattr(model.config, "pair", len(text_columns) == 2) != (len(text_columns) == 2):
        raise UserError(f"{model_dir}: the model reads {'sentence pairs' if model.config.pair else 'single sentences'} "
                        f"but {len(text_columns)} text column(s) were given")
    limit = max_length or min(getattr(model.config, "max_position_embeddings", 512), 512)
    logits = predict_logits(model, tokenizer, rows.texts, batch_size=batch_size, max_length=limit, device=device,
                            progress=progress)
    names, values = prediction_columns(logits, dict(model.config.id2label or {}))
    out = Path(out_path)
    atomic.write_text(out, render_output(out, rows, names, values))
    counts = {}
    if names[0] == "prediction":
        for value in values:
            counts[value[0]] = counts.get(value[0], 0) + 1
    return {"rows": len(rows.texts), "counts": counts, "columns": names, "out": out}
