"""The run designer's form, generated from RunSpec: a new spec field appears without template edits."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.api.errors import MAX_FIELD, clip
from worker.planning.spec import MAX_PROMPT_FILE, TARGET_PRESETS, RunSpec

# data.path: the worker fills it from the chosen dataset.
HIDDEN = {"data.path"}
FOLDED = {"quantization", "training", "samples", "resources"}  # advanced: shown folded until they hold an error
SPECIAL = {"data.dataset_id": "dataset", "model.base_model": "model", "lora.target_modules": "targets",
           "samples.prompts": "prompts"}  # prompts: a prompt file's JSON Lines, typed or loaded from a file
CUSTOM = "custom"  # the target-modules widget offers the spec's presets, then a custom list of names
MULTILINE_FROM = 500  # a text field allowed more characters than this (a system prompt) is a textarea
# DataSpec's "one source" check reports on the whole section; in the form it is about the dataset choice.
SECTION_ERRORS = {"data": "data.dataset_id"}
# The longest value a re-rendered form sends back: above any valid one (MAX_TEXT; 64 module names of 100 characters).
MAX_ECHO = 8192


@dataclass
class FormField:
    """One input of the designer."""

    name: str
    label: str
    help: str
    widget: str  # text, textarea, number, checkbox, select, dataset, model, targets
    choices: tuple[str, ...] = ()
    optional: bool = False
    step: str | None = None
    bounds: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The element id (dots and underscores do not need escaping in CSS selectors this way)."""
        return "f-" + self.name.replace(".", "-").replace("_", "-")


@dataclass
class Section:
    """A fieldset: the top-level run fields, or one nested spec section."""

    key: str
    title: str
    help: str
    fields: list[FormField]
    folded: bool


def _humanise(name: str) -> str:
    words = name.replace("_", " ")
    special = {"lora": "LoRA", "r": "Rank (r)", "gguf_file": "GGUF file", "dataset_id": "Dataset"}
    return special.get(name, words[:1].upper() + words[1:])


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional, whether None is allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(get_args(annotation))
    return annotation, False


def _bounds(info: FieldInfo) -> dict[str, Any]:
    keys = {annotated_types.Ge: ("min", "ge"), annotated_types.Gt: ("min", "gt"),
            annotated_types.Le: ("max", "le"), annotated_types.Lt: ("max", "lt")}
    return {keys[type(m)][0]: getattr(m, keys[type(m)][1]) for m in info.metadata if type(m) in keys}


def _field(name: str, info: FieldInfo) -> FormField:
    kind, optional = _unwrap(info.annotation)
    label = _humanise(name.rsplit(".", 1)[-1])
    base = FormField(name, label, info.description or "", "text", optional=optional)
    if name in SPECIAL:
        base.widget = SPECIAL[name]
        base.choices = (*TARGET_PRESETS, CUSTOM) if base.widget == "targets" else ()
        base.bounds = {"maxlength": MAX_PROMPT_FILE} if base.widget == "prompts" else {}
    elif kind is bool:
        base.widget = "checkbox"
    elif get_origin(kind) is Literal:
        base.widget, base.choices = "select", tuple(str(c) for c in get_args(kind))
    elif kind in (int, float):
        base.widget, base.step, base.bounds = "number", ("1" if kind is int else "any"), _bounds(info)
    elif kind is str and (longest := _max_length(info)) and longest > MULTILINE_FROM:
        base.widget, base.bounds = "textarea", {"maxlength": longest}
    return base


def _max_length(info: FieldInfo) -> int | None:
    return next((m.max_length for m in info.metadata if isinstance(m, annotated_types.MaxLen)), None)


def sections() -> list[Section]:
    """The designer's fieldsets, in RunSpec's field order."""
    top = Section("run", "Run", RunSpec.__doc__ or "", [], False)
    out = [top]
    for name, info in RunSpec.model_fields.items():
        kind, _ = _unwrap(info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = [_field(f"{name}.{key}", sub) for key, sub in kind.model_fields.items()]
            out.append(Section(name, _humanise(name), info.description or kind.__doc__ or "",
                               [f for f in fields if f.name not in HIDDEN], name in FOLDED))
        else:
            top.fields.append(_field(name, info))
    return out


def all_fields() -> list[FormField]:
    """Every visible field, flat."""
    return [f for s in sections() for f in s.fields]


def defaults() -> dict[str, Any]:
    """Form values of a fresh spec: each field's default."""
    values: dict[str, Any] = {}
    for name, info in RunSpec.model_fields.items():
        kind, _ = _unwrap(info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            values.update({f"{name}.{k}": sub.get_default(call_default_factory=True)
                           for k, sub in kind.model_fields.items()})
        else:
            values[name] = info.get_default(call_default_factory=True)
    return _with_targets(values)


def from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Form values from a stored (or pasted) spec dict, over the defaults."""
    return with_overrides(defaults(), spec)


def with_overrides(values: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Form `values` with the settings of a (partial) spec dict written over them."""
    values = dict(values)
    for key, value in spec.items():
        if isinstance(value, Mapping):
            values.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            values[key] = value
    return _with_targets(values)


def _with_targets(values: dict[str, Any]) -> dict[str, Any]:
    """Split target_modules into the radio choice and the custom text; prompts as a prompt file's lines."""
    prompts = values.get("samples.prompts")
    if isinstance(prompts, list):  # a stored or pasted spec's prompts, as the lines of a prompt file
        values["samples.prompts"] = "\n".join(json.dumps(p, ensure_ascii=False) if isinstance(p, dict) else str(p)
                                               for p in prompts)
    targets = values.get("lora.target_modules")
    if isinstance(targets, list):
        # A pasted spec's list may hold anything (numbers, lists): shown as text beside its error, never a 500.
        values["lora.target_modules"], values["lora.target_modules_custom"] = CUSTOM, ", ".join(map(str, targets))
    return values


def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Form values from a posted form, to re-render it as it was sent (each clipped to MAX_ECHO characters, more
    than any valid value holds, so a refused form never sends back megabytes)."""
    values = {f.name: clip(form.get(f.name, ""), MAX_PROMPT_FILE if f.widget == "prompts" else MAX_ECHO)
              for f in all_fields()}
    values.update({f.name: f.name in form for f in all_fields() if f.widget == "checkbox"})
    values["lora.target_modules_custom"] = clip(form.get("lora.target_modules_custom", ""), MAX_ECHO)
    return values


def parse(form: Mapping[str, str]) -> dict[str, Any]:
    """The nested spec dict a posted form describes (validation is RunSpec's job)."""
    data: dict[str, Any] = {}
    for f in all_fields():
        if f.widget != "checkbox" and f.name not in form:
            continue  # absent: the spec's default applies
        section, _, key = f.name.rpartition(".")
        (data.setdefault(section, {}) if section else data)[key] = _coerce(f, form)
    return data


def _coerce(f: FormField, form: Mapping[str, str]) -> Any:
    raw = form.get(f.name, "").strip()
    if f.widget == "checkbox":
        return f.name in form
    if f.widget == "targets" and raw == CUSTOM:
        return [m.strip() for m in form.get(f.name + "_custom", "").split(",") if m.strip()]
    if raw == "" and (f.optional or f.widget == "dataset"):
        return None
    return raw


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The first message for each form field; messages about no single field go under "_form"."""
    names = {f.name for f in all_fields()}
    out: dict[str, str] = {}
    for error in exc.errors():
        parts = [str(p) for p in error["loc"]]
        prefixes = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
        key = next((p for p in prefixes if p in names), None) or SECTION_ERRORS.get(".".join(parts))
        message = clip(error["msg"].removeprefix("Value error, "))
        if key is None:  # the location may name a key of the input: clipped like the message
            key, message = "_form", f"{clip('.'.join(parts), MAX_FIELD) or 'spec'}: {message}"
        out.setdefault(key, message)
    return out
