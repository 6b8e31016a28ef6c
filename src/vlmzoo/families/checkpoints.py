"""Loading an official checkpoint into modules vlmzoo owns, through one table of tensor names.

For the families that implement a model themselves (families/<name>/modeling.py): the
checkpoint's safetensors files, as published (one file, or shards listed in
``model.safetensors.index.json``), are read tensor by tensor into the modules, following the
family's table (``convert.py``). A table row is one of:

- ``(pattern, replacement)``: one official tensor is one of ours, renamed (regex, whole name);
- ``Split(pattern, targets)``: one official tensor is several of ours stacked along dim 0 (a
  fused q/k/v projection); each part's size is read off our module, so the table needs no config;
- ``Join(parts, target)``: several official tensors are one of ours stacked along dim 0 (an
  embedding and the rows added to it later);
- ``Ignore(pattern, why)``: an official tensor the model does not use (a buffer it computes
  itself, a head of another model, a layer the official code never builds), consumed and
  dropped on purpose: never read, and the reason stays in the table.

The first row whose pattern matches wins. Before a byte of weights is read, the plan is checked
against the modules from the files' headers alone: a tensor no row maps (or ignores), a module
tensor nothing fills, and a shape that differs are each an error naming the tensors, never a
warning. The modules are built on the meta device first, so weights are held once.
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from vlmzoo.errors import UnknownModelError

INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class Split:
    pattern: str
    targets: tuple[str, ...]  # replacements, in the order the parts are stacked


@dataclass(frozen=True)
class Join:
    parts: tuple[str, ...]  # patterns, in the order the tensors are stacked
    target: str  # the replacement; every part must name the same tensor of ours


@dataclass(frozen=True)
class Ignore:
    pattern: str
    why: str  # what the tensor is and why the model has no use for it


@dataclass
class Step:
    """Official tensor(s) -> our tensor(s): one rename, one split or one join."""
    sources: list[str]
    targets: list[str]


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # official tensors an Ignore row drops


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files: the index's shards, else every *.safetensors."""
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise UnknownModelError(f"{index}: not a safetensors index ({e})") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise UnknownModelError(f"{folder}: shard(s) {', '.join(missing)} listed in {INDEX} are missing")
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UnknownModelError(f"{folder}: no .safetensors weights; vlmzoo does not load pickled (.bin/.pt) weights")
    return files


def shapes(folder: Path) -> dict[str, tuple]:
    """Tensor name -> shape over a folder's safetensors, from the headers alone."""
    from vlmzoo.engine.memory import read_safetensors_header

    return {name: tuple(meta["shape"]) for file in weight_files(folder)
            for name, meta in read_safetensors_header(file).items() if name != "__metadata__"}


def route(name: str, table) -> tuple[list[str], tuple[int, int] | None] | None:
    """Where ``name`` goes: (our tensor names, (part index, parts) for a Join row else None), or
    None when no row matches. An Ignore row's tensor goes nowhere: ([], None)."""
    for rule in table:
        if isinstance(rule, Ignore):
            if re.fullmatch(rule.pattern, name):
                return [], None
        elif isinstance(rule, Split):
            if re.fullmatch(rule.pattern, name):
                return [re.sub(rule.pattern, t, name) for t in rule.targets], None
        elif isinstance(rule, Join):
            for i, part in enumerate(rule.parts):
                if re.fullmatch(part, name):
                    return [re.sub(part, rule.target, name)], (i, len(rule.parts))
        elif re.fullmatch(rule[0], name):
            return [re.sub(rule[0], rule[1], name)], None
    return None


def rename(name: str, table) -> str | None:
    """``name``'s single target (rename and join rows), or None: for tables of plain renames."""
    found = route(name, table)
    return found[0][0] if found and len(found[0]) == 1 else None


def plan(official: dict[str, tuple], table, expected: dict[str, tuple]) -> Plan:
    """How the official tensors (name -> shape) fill ours (name -> shape), and what does not fit."""
    result = Plan()
    unmapped, wrong, missing, joins = [], [], [], {}
    for name, shape in official.items():
        found = route(name, table)
        if found is not None and not found[0]:  # an Ignore row: consumed, never read
            result.ignored.append(name)
            continue
        targets = found[0] if found else []
        if not found or any(t not in expected for t in targets):
            unmapped.append(f"{name} (-> {', '.join(targets)})" if targets else name)
        elif found[1] is not None:  # one part of a Join: stacked once all its parts are known
            joins.setdefault(targets[0], [None] * found[1][1])[found[1][0]] = (name, shape)
        elif not _stacks(shape, [expected[t] for t in targets]):
            wrong.append(f"{name}: {tuple(shape)}, the model wants {' + '.join(str(expected[t]) for t in targets)}")
        else:
            result.steps.append(Step([name], targets))
    for target, parts in joins.items():
        if None in parts:
            missing.append(f"{target} (a part of it)")
        elif not _stacks(expected[target], [shape for _, shape in parts]):
            wrong.append(f"{' + '.join(n for n, _ in parts)}: {' + '.join(str(tuple(s)) for _, s in parts)}, "
                         f"the model wants {expected[target]}")
        else:
            result.steps.append(Step([n for n, _ in parts], [target]))
    missing = sorted(set(expected) - {t for step in result.steps for t in step.targets} - set(joins)) + missing
    for items, what in ((unmapped, "tensor(s) no rule maps to the model"), (wrong, "tensor(s) of the wrong shape"),
                        (missing, "model tensor(s) the checkpoint does not hold")):
        if items:
            result.problems.append(f"{len(items)} {what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
    return result


def _stacks(whole, parts) -> bool:
    """``parts`` stacked along dim 0 make ``whole``."""
    whole, parts = tuple(whole), [tuple(p) for p in parts]
    return (all(len(p) == len(whole) and p[1:] == whole[1:] for p in parts)
            and sum(p[0] if p else 1 for p in parts) == (whole[0] if whole else 1)
            and (len(parts) == 1 or len(whole) > 0))


def load_official(module, folder: Path, table, *, device: str, dtype, prefix: str = ""):
    """``module`` (built on the meta device) with the checkpoint's tensors, on ``device`` in
    ``dtype`` and in eval mode. ``prefix``: put before the file's tensor names, where the official
    code loads the file into a submodule (its names in the official model are the table's)."""
    import torch
    from safetensors import safe_open

    from vlmzoo.engine.memory import read_safetensors_header

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    where, shapes = {}, {}
    for file in weight_files(folder):
        for name, meta in read_safetensors_header(file).items():  # a damaged file is named
            if name != "__metadata__":
                where[prefix + name], shapes[prefix + name] = file, tuple(meta["shape"])
    steps = plan(shapes, table, expected)
    if steps.problems:
        raise UnknownModelError(f"{folder}: the checkpoint does not match the model; " + "; ".join(steps.problems))
    state = {}
    with ExitStack() as stack:
        handles = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f in set(where.values())}
        for step in steps.steps:
            tensors = [handles[where[n]].get_tensor(n[len(prefix):]).to(device=device, dtype=dtype) for n in step.sources]
            if len(step.targets) > 1:  # a split: the parts' sizes are ours
                for target, part in zip(step.targets, tensors[0].split([expected[t][0] for t in step.targets])):
                    state[target] = part.contiguous()
            else:
                state[step.targets[0]] = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
    module.load_state_dict(state, strict=True, assign=True)
    # buffers outside the checkpoint (rotary tables) keep their own dtype, as transformers keeps them
    return module.to(device=device).eval()


def view(model, paths, holders=None, holder_names=()):
    """A module whose state is ``model``'s under ``paths`` (same names, the same submodules) and
    the named holders: what one source file fills. Returns (view, parameter paths to hand back)."""
    from torch import nn

    root, handed = nn.Module(), []
    for path in paths:
        *parents, leaf = path.split(".")
        owner, mirror = model, root
        for name in parents:
            owner = getattr(owner, name)
            if name not in mirror._modules:
                mirror.add_module(name, nn.Module())
            mirror = mirror._modules[name]
        target = getattr(owner, leaf)
        if isinstance(target, nn.Module):
            mirror.add_module(leaf, target)
        else:
            mirror.register_parameter(leaf, target)
            handed.append(path)
    for name in holder_names:
        root.add_module(name, getattr(holders, name))
    return root, handed


def hand_back(model, part, handed) -> None:
    """After loading into a ``view``: the parameters it held directly (``handed``, replaced by
    the load) set on ``model`` again."""
    for name in handed:
        *parents, leaf = name.split(".")
        owner, mirror = model, part
        for p in parents:
            owner, mirror = getattr(owner, p), getattr(mirror, p)
        setattr(owner, leaf, getattr(mirror, leaf))


def rebuild_rotary(model, config) -> None:
    """A transformers decoder built on the meta device: its rotary table, which is no checkpoint
    tensor, built for real and in float32 (as transformers keeps it in any dtype)."""
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
