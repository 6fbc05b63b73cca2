"""The augmentation presets measured on real GLUE rows: what they make, how fast, and whether the
teacher still gives the variants their source row's label.

Usage: python experiments/augmentation.py [--rows 2000] [--label-rows 500] [--mlm-rows 100]
                                         [--teachers runs/teachers] [--runs runs/augmentation]
                                         [--tasks sst2,mrpc] [--data-dir DIR]

Part A, for each preset (kd/augment_presets.yaml) on the first --rows training rows of each task:
augmentation throughput on one core (the neighbour index built, every variant made), how much of
each variant changed, and a few variants. The tokenizer and word embeddings are the task's
fine-tuned teacher's when runs/teachers/TASK/metrics.json exists, else the MiniLM backbone's.
TinyBERT's masked-LM source needs an MLM and none is available offline (the MiniLM package is a
sentence encoder without an MLM head), so the `tinybert` row uses the embedding source, as
`--set augment_source=embedding` does; the MLM source's cost alone is timed on --mlm-rows rows
with a MiniLM-sized masked LM whose head is random (its words mean nothing; its speed does).

Part B, where a fine-tuned teacher exists: `nas knowledge --augment-preset P --max-train
--label-rows` per preset, then the share of variants whose teacher label (argmax of the logits)
equals that of their source row. Without a teacher, part B says so and measures nothing.

Writes experiments/results/augmentation.md (the command, the machine and the date at its top).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kd.augment import augment_with_settings  # noqa: E402
from kd.augment_presets import preset_names, preset_settings  # noqa: E402
from kd.knowledge import Knowledge  # noqa: E402
from nas.base import atomic  # noqa: E402
from nas.base.run_info import machine  # noqa: E402
from nas.data.glue_io import read_examples  # noqa: E402
from nas.data.models import load_classifier, load_tokenizer, quiet_transformers, resolve_model  # noqa: E402
from nas.data.tasks import get_task, resolve_data_dir  # noqa: E402

EXAMPLES = 2  # source rows shown per preset and task, with 3 variants each


def teacher_folder(teachers: Path, task: str) -> Path | None:
    folder = teachers / task
    return folder if (folder / "metrics.json").is_file() else None


def embedding_source(teachers: Path, task):
    """(description, tokenizer, word embeddings) from the fine-tuned teacher, else the MiniLM backbone."""
    folder = teacher_folder(teachers, task.name)
    if folder is not None:
        model = load_classifier(str(folder), task, new_head=False)
        return f"fine-tuned teacher {_relative(folder)}", load_tokenizer(str(folder)), model.get_input_embeddings().weight
    backbone = resolve_model("minilm")
    model = load_classifier(backbone, task, new_head=True)
    return "MiniLM backbone (no fine-tuned teacher yet)", load_tokenizer(backbone), model.get_input_embeddings().weight


def settings_here(name: str, task: str):
    """The preset for `task`; the MLM source swapped for embedding neighbours (no MLM offline)."""
    settings = preset_settings(name).for_task(task)
    return replace(settings, source="embedding") if settings.source == "mlm" else settings


def change_stats(examples, variants, n: int, mask_token: str) -> dict:
    """How the variants differ from their sources (words compared by position, one side at a time)."""
    same = masked = substituted = words = full = 0
    ratios = []
    for i, variant in enumerate(variants):
        source = examples[i // n]
        sides = [(source.text_a, variant.text_a), (source.text_b, variant.text_b)]
        same += all(_words(a) == _words(b) for a, b in sides)
        for before, after in sides:
            if before is None:
                continue
            b, a = before.split(), after.split()
            ratios.append(len(a) / max(len(b), 1))
            if len(a) == len(b):  # no n-gram cut: positions line up
                full += 1
                words += len(b)
                masked += sum(x == mask_token for x in a)
                substituted += sum(x != y and x != mask_token for x, y in zip(a, b))
    return {"identical": same / len(variants), "masked": masked / max(words, 1),
            "substituted": substituted / max(words, 1), "length_ratio": statistics.mean(ratios),
            "full_length_sides": full / max(len(ratios), 1)}


def part_a(task_name: str, args, teachers: Path) -> dict:
    task = get_task(task_name)
    examples = read_examples(task, resolve_data_dir(args.data_dir), "train", args.rows)
    origin, tokenizer, embeddings = embedding_source(teachers, task)
    embeddings = embeddings.detach().float()
    result = {"origin": origin, "rows": len(examples), "presets": {}}
    for name in preset_names():
        settings = settings_here(name, task.name)
        started, cpu = time.perf_counter(), time.process_time()
        variants = augment_with_settings(examples, settings, tokenizer=tokenizer, word_embeddings=embeddings)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        shown = [(examples[i].text_a, examples[i].text_b,
                  [(v.text_a, v.text_b) for v in variants[i * settings.n : i * settings.n + 3]]) for i in range(EXAMPLES)]
        result["presets"][name] = {
            "settings": settings.as_dict(), "seconds": seconds, "cpu_seconds": cpu, "variants": len(variants),
            "variants_per_s": len(variants) / cpu, "source_rows_per_s": len(examples) / cpu,
            **change_stats(examples, variants, settings.n, tokenizer.mask_token), "examples": shown,
        }
        print(f"{task.name} {name}: {len(variants)} variants in {seconds:.1f}s", flush=True)
    result["mlm"] = mlm_cost(task, examples[: args.mlm_rows], tokenizer)
    return result


def mlm_cost(task, examples, tokenizer) -> dict:
    """Seconds to find masked-LM substitutes for `examples` with a MiniLM-sized MLM (random head)."""
    from transformers import BertForMaskedLM

    from kd.augment_mlm import MaskedLMSubstitutes

    model = BertForMaskedLM.from_pretrained(resolve_model("minilm")).eval()  # encoder trained, head random
    source = MaskedLMSubstitutes(model, tokenizer, k=15)
    texts = [text for e in examples for text in (e.text_a, e.text_b) if text]
    started, cpu = time.perf_counter(), time.process_time()
    source.prepare(texts)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    masked = sum(w.isalpha() for text in texts for w in text.split())
    print(f"{task.name} mlm: {masked} masked words in {seconds:.1f}s", flush=True)
    return {"rows": len(examples), "masked_words": masked, "seconds": seconds, "cpu_seconds": cpu}


def part_b(task_name: str, args, teachers: Path) -> dict | None:
    teacher = teacher_folder(teachers, task_name)
    if teacher is None:
        return None
    out = {}
    for name in preset_names():
        folder = Path(args.runs) / task_name / name
        extra = ["--set", "augment_source=embedding"] if preset_settings(name).source == "mlm" else []
        command = [sys.executable, "-m", "nas", "knowledge", "--task", task_name, "--teacher", str(teacher),
                   "--out", str(folder), "--max-train", str(args.label_rows), "--max-dev", "64", "--device", "cpu",
                   "--augment-preset", name, *extra, *(["--data-dir", args.data_dir] if args.data_dir else [])]
        print("$", " ".join(command[1:]), flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        manifest = json.loads((folder / "manifest.json").read_text())
        n = manifest["inputs"]["augmentation"]["n"]
        train = np.load(folder / "train.logits.npy").astype(np.float32).argmax(-1)  # (R,)
        augmented = np.load(folder / "augmented.logits.npy").astype(np.float32).argmax(-1)  # (R*n,)
        source = np.repeat(train, n)  # row i of the augmented set comes from training row i // n
        examples = read_examples(get_task(task_name), resolve_data_dir(args.data_dir), "train", args.label_rows)
        gold = np.array([e.label for e in examples])
        variants = Knowledge(folder).augmented_examples()
        changed = np.array([(_words(v.text_a), _words(v.text_b)) != (_words(examples[i // n].text_a), _words(examples[i // n].text_b))
                            for i, v in enumerate(variants)])  # (R*n,) the variant differs from its source
        agree = augmented == source
        out[name] = {"n": n, "rows": int(len(augmented)), "agreement": float(agree.mean()),
                     "changed": float(changed.mean()), "agreement_changed": float(agree[changed].mean()),
                     "flipped_from_correct": float(((augmented != source) & (np.repeat(gold, n) == source)).mean()),
                     "teacher_train_accuracy": float((train == gold).mean()),
                     "seconds": round(time.perf_counter() - started, 1), "built_seconds": manifest.get("seconds")}
    return out


def _words(text: str | None) -> list[str]:
    """A text as the augmenter sees it (whitespace-split words); a missing second sentence is []."""
    return (text or "").split()


def _code(text: str) -> str:
    """Text inside a Markdown code span (a backtick would end it)."""
    return text.replace("`", "'")


def _relative(path) -> str:
    return str(path).replace(str(ROOT) + "/", "")


def write_report(path: Path, argv: str, a: dict, b: dict, args) -> None:
    lines = [
        "# Augmentation presets on real GLUE rows", "",
        f"Command: `{('python experiments/augmentation.py ' + argv).strip()}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
        "Presets: kd/augment_presets.yaml (`nas knowledge --augment-preset NAME`). `tinybert` is measured with the "
        "embedding source (`--set augment_source=embedding`): its masked-LM source needs a masked LM and none is "
        "available offline (the MiniLM package has no MLM head: `nas knowledge --augment-preset tinybert` with the "
        "MiniLM teacher stops with that one line).", "",
        *([getattr(args, "part_a_note"), ""] if getattr(args, "part_a_note", None) else []),
        "## A. What each preset makes, and how fast (one core)", "",
        "Throughput: `augment_with_settings` over the rows, the neighbour index included, one torch thread, per "
        "second of this process's CPU time (the machine is shared: wall seconds are shown beside it). "
        "Changed words are counted by position on the sides an n-gram did not cut (those whose length is unchanged). "
        "Words substituted fall short of the preset's rate because a word that the teacher's vocabulary splits "
        "into pieces has no whole-word neighbours and stays as it is.",
    ]
    for task, r in a.items():
        lines += ["", f"### {task}: first {r['rows']} training rows; tokenizer and embeddings of the {r['origin']}", "",
                  "| preset | variants per row | variants | CPU s | wall s | variants/s | source rows/s | identical to source | "
                  "words masked | words substituted | length vs source | sides not cut |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, p in r["presets"].items():
            lines.append(f"| {name} | {p['settings']['n']} | {p['variants']:,} | {p['cpu_seconds']:.1f} | {p['seconds']:.1f} | "
                         f"{p['variants_per_s']:,.0f} | "
                         f"{p['source_rows_per_s']:,.0f} | {p['identical']:.1%} | {p['masked']:.1%} | {p['substituted']:.1%} | "
                         f"{p['length_ratio']:.2f} | {p['full_length_sides']:.1%} |")
        m = r["mlm"]
        lines += ["", f"Masked-LM source, cost only: {m['masked_words']:,} masked words of the first {m['rows']} rows "
                  f"in {m['cpu_seconds']:.1f} CPU s ({m['seconds']:.1f} wall s; {m['masked_words'] / m['cpu_seconds']:,.0f} "
                  "MLM passes per CPU second, one per alphabetic word, the unmasked sentence as second segment as in "
                  f"TinyBERT) with MiniLM-L6's encoder and a random MLM head; at that rate the first {r['rows']} rows "
                  f"would take about {m['cpu_seconds'] / max(m['rows'], 1) * r['rows']:.0f} CPU s before any variant is made.", "", "Examples (source, then its first 3 variants):", ""]
        for name, p in r["presets"].items():
            for text_a, text_b, variants in p["examples"]:
                source = text_a if text_b is None else f"{text_a} ||| {text_b}"
                lines.append(f"- {name}: `{_code(source)}`")
                for va, vb in variants:
                    lines.append(f"  - `{_code(va if vb is None else f'{va} ||| {vb}')}`")
    lines += ["", "## B. Does the teacher give a variant its source row's label?", ""]
    for task in a:
        if task not in b:
            lines += [f"- {task}: not measured in this run (part B skipped for it).", ""]
            continue
        result = b[task]
        if result is None:
            lines += [f"- {task}: not measured: no fine-tuned teacher in {_relative(args.teachers)}/{task} "
                      "(metrics.json) when this ran.", ""]
            continue
        lines += [f"### {task}: `nas knowledge --augment-preset NAME --max-train {args.label_rows}` with the fine-tuned teacher", "",
                  "Agreement: the share of variants whose teacher label equals the teacher's label for the source row; "
                  "among changed variants: the same over the variants whose text differs from the source's. Flipped "
                  "from correct: the share of variants whose source the teacher labels correctly and whose label "
                  "differs. Dev limited to 64 rows (not used here).", "",
                  "| preset | variants per row | variants | changed | agreement | agreement, changed variants | "
                  "flipped from correct | teacher train accuracy | knowledge seconds |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, p in result.items():
            lines.append(f"| {name} | {p['n']} | {p['rows']:,} | {p['changed']:.1%} | {p['agreement']:.1%} | "
                         f"{p['agreement_changed']:.1%} | {p['flipped_from_correct']:.1%} | "
                         f"{p['teacher_train_accuracy']:.1%} | {p['built_seconds']} |")
        lines.append("")
    atomic.write_text(path, "\n".join(lines) + "\n")
    atomic.write_json(path.with_suffix(".json"), {"throughput": a, "agreement": b})
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mrpc")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--label-rows", type=int, default=500)
    parser.add_argument("--mlm-rows", type=int, default=100)
    parser.add_argument("--teachers", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--runs", default=str(ROOT / "runs/augmentation"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-labels", action="store_true", help="part A only")
    parser.add_argument("--label-tasks", default=None, help="tasks of part B (default: --tasks)")
    parser.add_argument("--reuse-throughput", action="store_true",
                        help="part A from the last run's augmentation.json (it took long on a loaded machine)")
    parser.add_argument("--results", default=str(ROOT / "experiments/results/augmentation.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quiet_transformers()
    teachers = Path(args.teachers)
    tasks = args.tasks.split(",")
    saved = Path(args.results).with_suffix(".json")
    if args.reuse_throughput and saved.is_file():  # part A as last measured; part B anew
        a = {task: v for task, v in json.loads(saved.read_text())["throughput"].items() if task in tasks}
        stamp = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(saved.stat().st_mtime))
        args.part_a_note = (f"Part A is reused from {_relative(saved)} as an earlier run of this script wrote it "
                            f"({stamp}, same machine); part B was measured by this command.")
    else:
        a = {task: part_a(task, args, teachers) for task in tasks}
    label_tasks = args.label_tasks.split(",") if args.label_tasks else tasks
    b = {} if args.skip_labels else {task: part_b(task, args, teachers) for task in label_tasks}
    write_report(Path(args.results), " ".join(sys.argv[1:] if argv is None else argv), a, b, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
