"""The plain-PyTorch renditions trainlab's fast recipes are timed against: airbench94 and airbench94_muon.

Written from the published description of Keller Jordan's cifar10-airbench (not copied from
it), for ``bench/bench_time_to_accuracy.py`` (whole runs, :func:`run_peer`) and
``bench/bench_epoch.py`` (one epoch of the same parts):

- the net (:func:`airbench_net`): a 2x2 whitening conv initialised from the patch covariance
  (:func:`init_whiten`), three conv-pool-BN-GELU groups, a scaled bias-free head;
- the optimizers and their schedules (:func:`peer_optimizers`): Nesterov SGD, and for
  airbench94_muon :class:`PeerMuon` on the conv kernels; airbench94's :func:`lookahead`;
- the batches (:func:`peer_batch`: alternating flip, reflect-padded random crops) and the
  evaluation (:func:`peer_eval`, with airbench's 6-view TTA);
- the training step both loops take (:func:`peer_step`), and the training loop
  (:func:`run_peer`) with its :class:`Budget`, which records a :class:`Trial` as trainlab's
  runs are recorded, the clock read after :func:`synchronize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _tta_runs import Trial
from torch import nn

from trainlab.data import prepare_data


# -- the net -----------------------------------------------------------------------------------
class Mul(nn.Module):
    """x * scale."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 same conv without bias; its first c_in filters start as the identity."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:c_in])
    return conv


def norm(channels: int) -> nn.BatchNorm2d:
    """BN with a frozen unit scale, momentum 0.6 in airbench's convention (0.4 in torch's), eps 1e-12."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def group(c_in: int, c_out: int) -> nn.Sequential:
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU."""
    return nn.Sequential(conv3(c_in, c_out), nn.MaxPool2d(2), norm(c_out), nn.GELU(),
                         conv3(c_out, c_out), norm(c_out), nn.GELU())


def airbench_net(muon: bool) -> nn.Sequential:
    """Whitening conv (3 -> 24, 2x2), GELU, groups 64/256/256, max-pool to 1x1, bias-free head."""
    head = nn.Linear(256, 10, bias=False)
    if muon:  # airbench94_muon: unit-std head, logits divided by the width
        with torch.no_grad():
            head.weight.mul_(1 / head.weight.std())
    net = nn.Sequential(nn.Conv2d(3, 24, 2, bias=True), nn.GELU(), group(24, 64), group(64, 256),
                        group(256, 256), nn.MaxPool2d(3), nn.Flatten(), head, Mul(1 / 256 if muon else 1 / 9))
    net[0].weight.requires_grad_(False)
    with torch.no_grad():
        net[0].bias.zero_()
    return net


@torch.no_grad()
def init_whiten(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Eigenvectors of the (uncentred) 2x2-patch covariance over 1/sqrt(eigenvalue + eps), +v and -v."""
    patches = F.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)  # (P, 12)
    values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (vectors.T / torch.sqrt(values + eps)[:, None]).reshape(12, 3, 2, 2).flip(0)
    conv.weight.copy_(torch.cat([filters, -filters]).float())


# -- the optimizers ----------------------------------------------------------------------------
def newton_schulz(g: torch.Tensor, steps: int) -> torch.Tensor:
    """Quintic Newton-Schulz orthogonalisation in bf16, as published with Muon."""
    x = g.bfloat16()
    x = x / (x.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
    return (x.T if tall else x).float()


class PeerMuon(torch.optim.Optimizer):
    """airbench94_muon's optimizer: Nesterov momentum, weight renormalised, orthogonalised step."""

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for grp in self.param_groups:
            for p in grp["params"]:
                buf = self.state[p].setdefault("buf", torch.zeros_like(p.grad))
                buf.mul_(grp["momentum"]).add_(p.grad)
                update = p.grad.add(buf, alpha=grp["momentum"])
                p.mul_(len(p) ** 0.5 / p.norm())
                p.add_(newton_schulz(update.reshape(len(p), -1), 3).view_as(p), alpha=-grp["lr"])


def peer_optimizers(net: nn.Sequential, muon: bool, batch: int) -> tuple[list[torch.optim.Optimizer],
                                                                          Callable[[int, int, int], None]]:
    """The optimizers and a ``set_lr(step, total, whiten_steps)`` following the published schedules."""
    bn_biases = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in [m.bias]]
    whiten_bias, head = net[0].bias, net[7].weight
    if muon:
        wd = 2e-6 * batch
        sgd = torch.optim.SGD([{"params": [whiten_bias], "lr": 0.053, "weight_decay": wd / 0.053},
                               {"params": bn_biases, "lr": 0.053, "weight_decay": wd / 0.053},
                               {"params": [head], "lr": 0.67, "weight_decay": wd / 0.67}],
                              momentum=0.85, nesterov=True)
        kernels = [p for p in net.parameters() if p.ndim == 4 and p.requires_grad]
        opts: list[torch.optim.Optimizer] = [sgd, PeerMuon(kernels, lr=0.24, momentum=0.6)]
    else:
        scale = 1024 * (1 + 1 / (1 - 0.85))
        lr, wd = 11.5 / scale, 0.0153 * batch / scale
        others = [p for p in net.parameters() if p.requires_grad and all(p is not b for b in bn_biases)]
        opts = [torch.optim.SGD([{"params": bn_biases, "lr": 64 * lr, "weight_decay": wd / (64 * lr)},
                                 {"params": others, "lr": lr, "weight_decay": wd / lr}], momentum=0.85, nesterov=True)]
    for opt in opts:
        for grp in opt.param_groups:
            grp["initial_lr"] = grp["lr"]

    def set_lr(step: int, total: int, whiten_steps: int) -> None:
        for opt in opts:
            for i, grp in enumerate(opt.param_groups):
                if muon and opt is opts[0] and i == 0:
                    grp["lr"] = grp["initial_lr"] * max(0.0, 1 - step / whiten_steps)
                elif muon:
                    grp["lr"] = grp["initial_lr"] * (1 - step / total)
                else:  # triangle: 0.2 -> 1 at 23 % of the steps -> 0.07
                    peak = int(0.23 * total)
                    frac = step / peak if step < peak else (step - peak) / (total - peak)
                    grp["lr"] = grp["initial_lr"] * (0.2 + 0.8 * frac if step < peak else 1 - 0.93 * frac)

    return opts, set_lr


@torch.no_grad()
def lookahead(net: nn.Module, average: dict[str, torch.Tensor] | None, decay: float) -> dict[str, torch.Tensor]:
    """airbench94's lookahead: the first call copies the weights, later ones average and copy back."""
    state = {k: v for k, v in net.state_dict().items() if v.is_floating_point()}
    if average is None:
        return {k: v.clone() for k, v in state.items()}
    for name, avg in average.items():
        avg.lerp_(state[name], 1 - decay)
        state[name].copy_(avg)
    return average


# -- batches and evaluation --------------------------------------------------------------------
def peer_batch(x: torch.Tensor, flip: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Flip where ``flip`` says, reflect-pad by ``pad``, crop back at a random offset per image.

    ``x`` and ``flip`` may live on a GPU; the offsets are drawn from the CPU generator ``g``
    (the same draws on every device) and moved to ``x``'s device.
    """
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad,) * 4, mode="reflect")  # (B, C, H + 2p, W + 2p)
    b, _, h, w = x.shape
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=g).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


@torch.no_grad()
def peer_eval(net: nn.Module, x: torch.Tensor, y: torch.Tensor, tta: bool) -> float:
    """Accuracy in bf16; with ``tta`` airbench's 6 views (mirror, and +-1 pixel shifts of both)."""
    net.eval()

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * net(v.contiguous(memory_format=torch.channels_last)).float() + \
            0.5 * net(v.flip(3).contiguous(memory_format=torch.channels_last)).float()

    correct = 0
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        for s in range(0, len(x), 2000):
            xb = x[s : s + 2000]
            if tta:
                padded = F.pad(xb, (1, 1, 1, 1), mode="reflect")
                shifted = (mirror(padded[:, :, :-2, :-2]) + mirror(padded[:, :, 2:, 2:])) / 2
                logits = 0.5 * mirror(xb) + 0.5 * shifted
            else:
                logits = net(xb.contiguous(memory_format=torch.channels_last)).float()
            correct += int((logits.argmax(1) == y[s : s + 2000]).sum())
    net.train()
    return correct / len(y)


# -- the training loop -------------------------------------------------------------------------
def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (``cuda``), so that the clock read next is real; no-op on the CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


def peer_step(net: nn.Module, opts: list[torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
              flip: torch.Tensor, g: torch.Generator) -> None:
    """One training step of either rendition on a batch: images ``x`` (normalised) flipped where
    ``flip`` says and cropped by :func:`peer_batch` (padding 2, offsets from ``g``), the forward
    in bf16, cross-entropy against ``y`` with label smoothing 0.2 summed over the batch, and a
    step of every optimizer in ``opts`` at the learning rates the caller has set (``set_lr``).
    """
    xb = peer_batch(x, flip, 2, g)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        out = net(xb.contiguous(memory_format=torch.channels_last))
    loss = F.cross_entropy(out.float(), y, label_smoothing=0.2, reduction="sum")
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()


@dataclass(frozen=True)
class Budget:
    """How much a peer run trains: images (None = all), batch, epochs, and its epoch-based options."""

    batch: int
    epochs: float
    train_images: int | None = None
    test_images: int | None = None
    lookahead_start: int = 3
    lookahead_every: int = 5
    whiten_bias_epochs: int = 3


def run_peer(kind: str, seed: int, data_dir: str | None, budget: Budget, device: str = "cpu") -> Trial:
    """Train airbench94 (``kind`` airbench94) or airbench94_muon as a plain PyTorch loop on ``device``
    (the data, the augmentation and the model all there; the random draws on the CPU)."""
    muon = kind == "airbench94_muon"
    trial = Trial()
    start = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    limit = {"train": budget.train_images, "test": budget.test_images}
    data = prepare_data("cifar10", data_dir=data_dir, val_fraction=0.0, limit=limit, normalize="channel", seed=seed)
    x, y = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).long().to(device)
    x_test, y_test = torch.from_numpy(data.x_test).to(device), torch.from_numpy(data.y_test).long().to(device)
    batch = budget.batch
    per_epoch = len(y) // batch
    total = math.ceil(per_epoch * budget.epochs)
    whiten_steps = per_epoch * budget.whiten_bias_epochs
    net = airbench_net(muon).to(device)
    init_whiten(net[0], x[:5000])
    net = net.to(memory_format=torch.channels_last)
    opts, set_lr = peer_optimizers(net, muon, batch)
    flip_base = (torch.rand(len(y), generator=g) < 0.5).to(device)
    average: dict[str, torch.Tensor] | None = None
    step = 0
    for epoch in range(math.ceil(total / per_epoch)):
        perm = torch.randperm(len(y), generator=g).to(device)
        net[0].bias.requires_grad_(step < whiten_steps)
        for i in range(per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            set_lr(step, total, whiten_steps)
            peer_step(net, opts, x[idx], y[idx], flip_base[idx] ^ bool(epoch % 2), g)
            step += 1
            if not muon and epoch >= budget.lookahead_start and step % budget.lookahead_every == 0:
                average = lookahead(net, average, 0.95**5 * (step / total) ** 3)
            if step >= total:
                break
        if average is not None:
            lookahead(net, average, 1.0)
        accuracy = peer_eval(net, x_test, y_test, False)  # then the clock: the evaluation counts
        synchronize(device)
        trial.evaluations.append((time.perf_counter() - start, accuracy, f"epoch {epoch + 1}"))
    accuracy = peer_eval(net, x_test, y_test, True)
    synchronize(device)
    trial.total_s = time.perf_counter() - start
    trial.evaluations.append((trial.total_s, accuracy, "final, TTA"))
    return trial
