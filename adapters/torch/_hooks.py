"""The scaler's window on the model: forward hooks that hold neither the scaler nor an output.

A hook lives in the model's hook dictionaries, so whatever it references travels with the
model: ``copy.deepcopy(model)`` copies it and ``torch.save(model)`` pickles it. A bound method
of the scaler dragged the whole scaler along (and failed between ``step()`` and ``update()``,
where ``GradScaler`` refuses to be pickled); a kept output held activations alive until the
next forward (an LLM's logits are gigabytes). So:

* the probe keeps a **weak** reference to the scaler and to the latest output's first tensor:
  the diagnostics read the output only if the caller still holds it when an anomaly comes;
* a copied or pickled probe is **inert**: ``functools.partial(sys.audit, ...)``, a built-in
  that accepts any arguments and returns None, so a deep copy of the model does not feed this
  scaler, and a saved model references nothing of regulator (it loads where regulator is not
  installed).
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ._finite import FLOAT16_MAX, fp16_overflow_fields, non_finite_fields

if TYPE_CHECKING:
    from ._grad_scaler import GuardedGradScaler

__all__ = ["OutputProbe", "first_tensor"]

#: What a copied or unpickled probe becomes: a built-in that ignores its arguments.
_DETACHED_EVENT = "torch.nn.Module.hook.detached"


def _inert() -> Callable[..., None]:
    return functools.partial(sys.audit, _DETACHED_EVENT)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor of a model output (a tensor, or nested tuples/lists/dicts of them)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


class _Hook:
    """Base of the probe's hooks: copies and pickles become inert (see the module header)."""

    __slots__ = ("probe",)

    def __init__(self, probe: OutputProbe) -> None:
        self.probe = probe

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial, (sys.audit, _DETACHED_EVENT))

    def __deepcopy__(self, memo: dict[int, Any]) -> Callable[..., None]:
        return _inert()


class _ForwardHook(_Hook):
    __slots__ = ()

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        # Two attribute stores and nothing else: inside a torch.compile graph they are side
        # effects replayed after the graph with the real output (a weak reference made while
        # tracing would point at the trace's tensor for ever); reading a changing Python
        # value here would make dynamo guard on it and recompile.
        probe = self.probe
        probe.held = output if type(output) is torch.Tensor else first_tensor(output)
        if torch.compiler.is_compiling():
            probe.compiled = True


class _InputHook(_Hook):
    __slots__ = ()

    def __call__(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        batch = (args, kwargs) if kwargs else args
        if torch.compiler.is_compiling():
            # no read in a graph (a graph break): the counts are computed in it and the
            # scaler's next scale() reads them, before the backward
            self.probe.pending.append(_counts_in_graph(batch))
            return
        scaler = self.probe.scaler()
        if scaler is None:
            return
        problems = non_finite_fields(batch)
        if problems:
            scaler._reject_input(*problems[0])
        device = scaler._device
        if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16:
            for field in fp16_overflow_fields(batch):
                scaler._note_fp16_overflow(field)


def _fields_in_graph(value: Any, path: str, out: list[tuple[str, torch.Tensor]]) -> None:
    # the forward's inputs, as non_finite_fields names them (plain recursion: dynamo traces
    # it; a compiled forward's inputs are tensors in tuples, lists and dicts)
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            out.append((path or "<tensor>", value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _fields_in_graph(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _fields_in_graph(item, f"{path}[{index}]", out)


def _counts_in_graph(batch: Any) -> list[tuple[str, torch.Tensor]]:
    """Per field: [non-finite, NaN, finite beyond float16 under fp16 autocast] counts."""
    fields: list[tuple[str, torch.Tensor]] = []
    _fields_in_graph(batch, "", fields)
    out = []
    for field, tensor in fields:
        data = tensor.detach()
        finite = torch.isfinite(data)
        bad = finite.logical_not().sum()
        nans = torch.isnan(data).sum()
        device = data.device.type
        beyond = (
            data.abs().gt(FLOAT16_MAX).logical_and(finite).sum()
            if data.dtype not in (torch.float16, torch.bfloat16)
            and torch.is_autocast_enabled(device)
            and torch.get_autocast_dtype(device) == torch.float16
            else torch.zeros_like(bad)
        )
        out.append((field, torch.stack([bad, nans, beyond])))
    return out


class OutputProbe:
    """Forward hooks on the model for the scaler's diagnostics (R3.2) and input checks (R3.4).

    ``attach()`` registers the output hook, ``detach()`` removes it; the scaler attaches it only
    while an anomaly may come (a hook forces torch's slow module-call path, about 1.5 us a
    forward). The input hook, when asked for, stays for the probe's life.
    """

    def __init__(self, scaler: GuardedGradScaler, model: torch.nn.Module, check_inputs: bool):
        self.scaler: weakref.ReferenceType[GuardedGradScaler] = weakref.ref(scaler)
        self.model = weakref.ref(model)
        # the latest output: held from the forward to the scaler's next scale() (strong, so
        # that a compiled graph can set it), then only weakly
        self.held: torch.Tensor | None = None
        self.output: weakref.ReferenceType[torch.Tensor] | None = None
        self.output_dtype_seen = False
        self.compiled = False  # the hook ran inside torch.compile: it stays (see detach)
        # input checks a compiled forward computed, for the scaler's next scale() to read
        self.pending: list[list[tuple[str, torch.Tensor]]] = []
        self._output_handle: torch.utils.hooks.RemovableHandle | None = None
        self._input_handle: torch.utils.hooks.RemovableHandle | None = None
        if check_inputs:
            self._input_handle = model.register_forward_pre_hook(_InputHook(self), with_kwargs=True)
        # the hooks go when the scaler goes: a dead scaler's probe must not slow the model
        weakref.finalize(scaler, self.close)

    @property
    def attached(self) -> bool:
        return self._output_handle is not None

    def attach(self) -> None:
        model = self.model()
        if self._output_handle is None and model is not None:
            self._output_handle = model.register_forward_hook(_ForwardHook(self))

    def detach(self) -> None:
        if self.compiled:
            return  # dynamo guards on the hook count: removing it would recompile the graph
        if self._output_handle is not None:
            self._output_handle.remove()
            self._output_handle = None

    def close(self) -> None:
        self.detach()
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None

    def settle(self) -> torch.Tensor | None:
        """From the forward's strong reference to a weak one (the scaler's scale() calls it)."""
        tensor = self.held
        self.held = None
        if tensor is not None:
            self.output = weakref.ref(tensor)
        return tensor

    def latest_output(self) -> torch.Tensor | None:
        """The latest output's first tensor, if the caller still holds it."""
        if self.held is not None:
            return self.held
        return self.output() if self.output is not None else None
