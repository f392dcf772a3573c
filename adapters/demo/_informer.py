"""A small Informer (Zhou et al., AAAI 2021) and the GMADL loss, for the demo's training half.

Informer's two encoder ideas, at demo size (a few tens of thousands of parameters):

* **ProbSparse self-attention.** Most queries attend almost uniformly; only a few "active"
  ones matter. For each query, a sparsity score ``M(q) = max_j(q.k_j) - mean_j(q.k_j)`` is
  estimated on ``c * ln(L)`` randomly sampled keys; the top ``c * ln(L)`` queries get full
  attention, the others the mean of the values (the encoder's lazy output). Cost
  O(L log L) instead of O(L^2).
* **Self-attention distilling.** Between encoder layers a Conv1d + BatchNorm + ELU + max-pool
  (stride 2) halves the sequence, keeping the dominant features.

GMADL (Generalized Mean Absolute Directional Loss; Michańków, Sakowski & Ślepaczuk, 2024)
rewards predicting the direction of returns, weighted by their size::

    GMADL = mean( -(sigmoid(a * R * R_hat) - 0.5) * |R| ** b )

``a`` sets how sharply a right or wrong direction counts, ``b`` how much large moves weigh.
It is computed in float32 whatever autocast does to the model (R**b in float16 underflows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Informer", "gmadl_loss"]


def gmadl_loss(pred: Tensor, target: Tensor, *, a: float = 10.0, b: float = 1.5) -> Tensor:
    """GMADL of predicted vs actual returns (same shape), in float32."""
    if a <= 0 or b <= 0:
        raise ValueError(f"gmadl: a and b must be > 0 (got a={a!r}, b={b!r})")
    with torch.autocast(pred.device.type, enabled=False):
        p = pred.float()
        r = target.float()
        loss: Tensor = (-(torch.sigmoid(a * r * p) - 0.5) * r.abs().pow(b)).mean()
        return loss


class ProbSparseAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, factor: int = 5) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model: must be a multiple of heads={heads} (got {d_model})")
        self.heads = heads
        self.factor = factor
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, d_model = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(batch, length, 3, h, d_model // h).permute(2, 0, 3, 1, 4)
        # (batch, heads, length, d_head) each
        n_top = min(length, max(1, int(self.factor * math.ceil(math.log(length + 1)))))
        n_sample = min(length, n_top)
        sample = torch.randint(length, (n_sample,), device=x.device)
        scores_sample = q @ k[:, :, sample].transpose(-2, -1)  # (b, h, L, n_sample)
        sparsity = scores_sample.max(-1).values - scores_sample.mean(-1)
        top = sparsity.topk(n_top, dim=-1).indices  # (b, h, n_top): the active queries
        q_top = torch.gather(q, 2, top.unsqueeze(-1).expand(-1, -1, -1, q.shape[-1]))
        attn = (q_top @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        active = attn.softmax(-1) @ v  # (b, h, n_top, d_head)
        out = v.mean(2, keepdim=True).expand_as(v).clone()  # lazy queries: mean of values
        out = out.to(active.dtype).scatter(
            2, top.unsqueeze(-1).expand(-1, -1, -1, v.shape[-1]), active
        )
        result: Tensor = self.out(out.transpose(1, 2).reshape(batch, length, d_model))
        return result


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = ProbSparseAttention(d_model, heads)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.attention(x)))
        result: Tensor = self.norm2(x + self.drop(self.ff(x)))
        return result


class DistillingLayer(nn.Module):
    """Conv1d + BatchNorm + ELU + MaxPool(stride 2): halves the sequence between layers."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1, padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.pool(F.elu(self.norm(self.conv(x.transpose(1, 2)))))
        return y.transpose(1, 2)


class Informer(nn.Module):
    """Encoder-only Informer regressor: (batch, length, features) -> (batch,) next return."""

    def __init__(
        self,
        features: int,
        *,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, dropout) for _ in range(layers))
        self.distil = nn.ModuleList(DistillingLayer(d_model) for _ in range(layers - 1))
        self.head = nn.Linear(d_model, 1)
        self.d_model = d_model

    def _positions(self, length: int, device: torch.device) -> Tensor:
        pos = torch.arange(length, device=device).unsqueeze(1)
        div = torch.exp(
            torch.arange(0, self.d_model, 2, device=device) * (-math.log(1e4) / self.d_model)
        )
        pe = torch.zeros(length, self.d_model, device=device)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self._positions(x.shape[1], x.device)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.distil):
                h = self.distil[i](h)
        result: Tensor = self.head(h[:, -1]).squeeze(-1)
        return result
