"""``model_summary``: a table of any torch model's layers, like Keras' ``model.summary()``.

It works on every model the torch engine builds (custom ones too); the torch engine writes it
to ``model_summary.txt`` in the run directory, and the run report shows it.
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.engines.torch.custom import output_tensors
from trainlab.engines.torch.models import BasicBlock, count_params


def model_summary(model: nn.Module, input_shape: tuple[int, int, int]) -> str:
    """A table like Keras' ``model.summary()``: layer, output shape, parameters, and the totals.

    Rows count every parameter of their layer, frozen ones too (the whitening conv, a
    batch-norm scale held at 1), so the rows add up to "Total params"; "Trainable params"
    is what the optimizer updates, as in Keras.

    One row per leaf module (and per ResNet-18/34 ``BasicBlock``; ResNet-9's residual branch
    gets a row per layer), from a forward pass of one zero image in eval mode, so shapes are
    the real ones.
    """
    rows: list[tuple[str, str, int]] = []
    hooks = []

    def leaf(module: nn.Module) -> bool:
        return isinstance(module, BasicBlock) or not any(True for _ in module.children())

    def hook(name: str) -> object:
        def record(module: nn.Module, _inputs: object, output: object) -> None:
            params = sum(p.numel() for p in module.parameters())
            # A custom model's leaf may return several tensors (an LSTM's output and state).
            shape = " ".join("(None, " + ", ".join(str(d) for d in t.shape[1:]) + ")" for t in output_tensors(output))
            rows.append((f"{name} ({type(module).__name__})", shape or "-", params))
        return record

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if leaf(child):
                hooks.append(child.register_forward_hook(hook(full)))  # type: ignore[arg-type]
            else:
                visit(child, f"{full}.")

    visit(model, "")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = count_params(model)
    width = max([len(r[0]) for r in rows] + [20])
    line = "-" * (width + 40)
    out = [line, f"{'Layer (type)':<{width}}  {'Output Shape':<24}{'Param #':>12}", "=" * (width + 40)]
    out += [f"{name:<{width}}  {shape:<24}{params:>12,}" for name, shape, params in rows]
    out += ["=" * (width + 40), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    return "\n".join(out)


__all__ = ["model_summary"]
