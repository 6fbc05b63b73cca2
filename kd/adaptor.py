"""Turn any model's raw outputs into one `ModelOutputs` record.

`adapt(model, inputs, need=...)` runs `model` once on `inputs` (a tokenizer's dict) and fills
the record with the logits, the mask and only what `need` names, so a method that reads logits
alone never pays for hidden states or attention maps. Three kinds of model are understood:

* Hugging Face encoders (`PreTrainedModel`, e.g. `BertForSequenceClassification`, MiniLM):
  hidden states and attention maps through `output_hidden_states` / `output_attentions`; the
  query/key/value projections through forward hooks on each layer's self-attention, registered
  on this model instance for this one call and removed afterwards.
* The AdaBERT student (`searchspace.student.AdaBertStudentForSequenceClassification`): the
  embedding output and each cell's output, through its public `cell_outputs` and `classify`.
  It has no attention, so asking it for attention maps is a `UserError`.
* Anything else callable whose output is a tensor or has `.logits`: logits only.

Attention maps and `attn_implementation`: transformers 5 defaults to "sdpa", which does not
return attention probabilities. When attentions are needed from such a model, `adapt` switches
it to "eager" for the call (`model.set_attn_implementation`) and switches it back afterwards;
the two compute the same function, so logits do not change. A model without
`set_attn_implementation` is asked as it is, and a `UserError` says to load it with
`attn_implementation="eager"` if it gives no attention maps.

`adapt` leaves grad mode and train/eval mode to the caller (teachers: `torch.no_grad()` and
`.eval()`). In train mode the eager attention maps are those after attention dropout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from kd.record import ModelOutputs
from nas.base.errors import UserError
from ops.masking import masked_mean
from searchspace.student import AdaBertStudentForSequenceClassification

NEEDS = frozenset({"hidden_states", "attentions", "values", "queries", "keys", "pooled"})
PROJECTIONS = ("queries", "keys", "values")
# How each need is named in error messages.
_WHAT = {
    "hidden_states": "hidden states",
    "attentions": "attention maps",
    "values": "attention value vectors",
    "queries": "attention query vectors",
    "keys": "attention key vectors",
    "pooled": "a pooled sentence vector",
}


@dataclass(frozen=True)
class AttentionLayout:
    """Where a model family keeps its layers (from `model.base_model`) and, within a layer, the
    self-attention projections (B, T, H) -> (B, T, heads·d)."""

    layers: str
    queries: str
    keys: str
    values: str


LAYOUTS = (
    AttentionLayout("encoder.layer", "attention.self.query", "attention.self.key", "attention.self.value"),  # BERT, RoBERTa, MiniLM
    AttentionLayout("transformer.layer", "attention.q_lin", "attention.k_lin", "attention.v_lin"),  # DistilBERT
)


def adapt(model, inputs: Mapping[str, torch.Tensor], *, need: set[str] | frozenset[str] = frozenset(),
          method: str = "this KD method") -> ModelOutputs:
    """Run `model(**inputs)` and return its `ModelOutputs` holding the logits, the mask and `need`.

    need: a subset of `NEEDS`. method: the KD method's name, for error messages.
    Raises `UserError` (one line) when the model cannot give something `need` names.
    """
    need = frozenset(need)
    if need - NEEDS:
        raise ValueError(f"unknown needs {sorted(need - NEEDS)}; known: {sorted(NEEDS)}")
    mask = _mask(inputs)
    if isinstance(model, AdaBertStudentForSequenceClassification):
        return _adapt_student(model, inputs, need, method, mask)
    if isinstance(model, PreTrainedModel):
        return _adapt_hugging_face(model, inputs, need, method, mask)
    return _adapt_plain(model, inputs, need, method, mask)


def _cannot(model, what: str, method: str) -> UserError:
    return UserError(f"{type(model).__name__} cannot give {_WHAT[what]}, which {method} needs")


def _refuse(model, missing, method) -> None:
    if missing:
        raise _cannot(model, sorted(missing)[0], method)


def _mask(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if inputs.get("attention_mask") is not None:
        return inputs["attention_mask"].bool()  # (B, T)
    if inputs.get("input_ids") is not None:
        return torch.ones_like(inputs["input_ids"], dtype=torch.bool)  # (B, T)
    raise UserError("the inputs hold neither attention_mask nor input_ids, so their tokens cannot be told apart")


# ----- the AdaBERT student -----

def student_forward(model: AdaBertStudentForSequenceClassification, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None):
    """The student's forward through its public `cell_outputs` and `classify`, keeping what it
    computes on the way.

    Returns (logits (B, C), hidden states: the embedding output then each cell's output, all
    (B, T, H), mask (B, T) bool). A test keeps the logits equal to `model(...).logits`.
    """
    states = model.cell_outputs(input_ids, attention_mask, token_type_ids)
    return model.classify(states), (states.embedded, *states.per_cell), states.mask


def _adapt_student(model, inputs, need, method, mask) -> ModelOutputs:
    _refuse(model, need - {"hidden_states", "pooled"}, method)
    logits, hidden, _ = student_forward(
        model, inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids")
    )
    pooled = None
    if "pooled" in need:  # what the head reads: the last cell's output averaged over real tokens
        pooled = masked_mean(hidden[-1], mask)  # (B, H)
    return ModelOutputs(logits=logits, mask=mask, hidden_states=hidden if "hidden_states" in need else None,
                        pooled=pooled)


# ----- Hugging Face encoders -----

def _adapt_hugging_face(model, inputs, need, method, mask) -> ModelOutputs:
    captured: dict[str, dict[int, torch.Tensor]] = {name: {} for name in PROJECTIONS if name in need}
    pooled: dict[int, torch.Tensor] = {}
    handles = []
    previous_attention = None
    kwargs = {}
    try:
        if captured:
            _hook_projections(model, captured, method, handles)
        if "pooled" in need:
            handles.append(_hook_pooler(model, pooled, method))
        if "hidden_states" in need:
            kwargs["output_hidden_states"] = True
        if "attentions" in need:
            previous_attention = _use_eager_attention(model, method)
            kwargs["output_attentions"] = True
        output = model(**inputs, **kwargs)
    finally:
        # Hooks and the attention switch belong to this call only; nothing leaks into the next.
        for handle in handles:
            handle.remove()
        if previous_attention is not None:
            model.set_attn_implementation(previous_attention)

    hidden = tuple(output.hidden_states) if "hidden_states" in need else None
    attentions = None
    if "attentions" in need:
        attentions = tuple(output.attentions or ())
        if not attentions or any(a is None for a in attentions):
            raise UserError(f"{_cannot(model, 'attentions', method)} (load it with attn_implementation='eager')")
    heads = model.config.num_attention_heads
    projected = {name: tuple(_split_heads(by_layer[i], heads) for i in sorted(by_layer))
                 for name, by_layer in captured.items()}
    return ModelOutputs(logits=output.logits, mask=mask, hidden_states=hidden, attentions=attentions,
                        pooled=pooled.get(0), **projected)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = x.shape  # (B, T, heads·d)
    return x.view(batch, tokens, heads, width // heads).transpose(1, 2)  # (B, heads, T, d)


def _resolve(module, path: str):
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def _hook_projections(model, captured, method, handles: list) -> None:
    """Forward hooks on each layer's query/key/value projection for the names in `captured`,
    appended to `handles` as they are made, so the caller removes them even after an error."""
    for layout in LAYOUTS:
        layers = _resolve(model.base_model, layout.layers)
        if layers is None:
            continue
        for index, layer in enumerate(layers):
            for name, by_layer in captured.items():
                projection = _resolve(layer, getattr(layout, name))
                if projection is None:
                    raise _cannot(model, name, method)

                def keep(module, args, output, by_layer=by_layer, index=index):
                    by_layer[index] = output  # (B, T, heads·d)

                handles.append(projection.register_forward_hook(keep))
        return
    raise _cannot(model, next(iter(captured)), method)


def _hook_pooler(model, slot: dict, method):
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is None:
        raise _cannot(model, "pooled", method)

    def keep(module, args, output):
        slot[0] = output  # (B, H)

    return pooler.register_forward_hook(keep)


def _use_eager_attention(model, method) -> str | None:
    """Switch `model` to eager attention if it uses another kind; returns the kind to restore."""
    current = getattr(model.config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        return None  # older transformers fall back to eager by themselves; the outputs are checked after
    model.set_attn_implementation("eager")
    return current


# ----- anything else -----

def _adapt_plain(model, inputs, need, method, mask) -> ModelOutputs:
    _refuse(model, need, method)
    output = model(**inputs)
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise UserError(f"{type(model).__name__} returned {type(output).__name__}, neither logits nor an object "
                        "with .logits")
    return ModelOutputs(logits=logits, mask=mask)
