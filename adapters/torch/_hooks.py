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

from ._finite import fp16_overflow_fields, non_finite_fields

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
        probe = self.probe
        probe.forwards += 1  # a replayed anomaly is described only if no forward came since
        tensor = output if type(output) is torch.Tensor else first_tensor(output)
        probe.output = None if tensor is None else weakref.ref(tensor)
        if not probe.output_dtype_seen and tensor is not None:
            probe.output_dtype_seen = True
            if tensor.dtype == torch.bfloat16:
                scaler = probe.scaler()
                if scaler is not None:
                    scaler._note_bf16_output()


class _InputHook(_Hook):
    __slots__ = ()

    def __call__(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        scaler = self.probe.scaler()
        if scaler is None:
            return
        batch = (args, kwargs) if kwargs else args
        problems = non_finite_fields(batch)
        if problems:
            scaler._reject_input(*problems[0])
        device = scaler._device
        if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16:
            for field in fp16_overflow_fields(batch):
                scaler._note_fp16_overflow(field)


class OutputProbe:
    """Forward hooks on the model for the scaler's diagnostics (R3.2) and input checks (R3.4).

    ``attach()`` registers the output hook, ``detach()`` removes it; the scaler attaches it only
    while an anomaly may come (a hook forces torch's slow module-call path, about 1.5 us a
    forward). The input hook, when asked for, stays for the probe's life.
    """

    def __init__(self, scaler: GuardedGradScaler, model: torch.nn.Module, check_inputs: bool):
        self.scaler: weakref.ReferenceType[GuardedGradScaler] = weakref.ref(scaler)
        self.model = weakref.ref(model)
        self.output: weakref.ReferenceType[torch.Tensor] | None = None
        self.output_dtype_seen = False
        self.forwards = 0  # forwards seen while attached
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
        if self._output_handle is not None:
            self._output_handle.remove()
            self._output_handle = None

    def close(self) -> None:
        self.detach()
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None

    def latest_output(self) -> torch.Tensor | None:
        """The latest output's first tensor, if the caller still holds it."""
        return self.output() if self.output is not None else None
