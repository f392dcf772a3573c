"""The demo's Informer (ProbSparse attention, distilling) and the GMADL loss."""

from __future__ import annotations

import math

import pytest
import torch
from regulator.adapters.demo._informer import (
    DistillingLayer,
    Informer,
    ProbSparseAttention,
    gmadl_loss,
)


def test_gmadl_matches_its_formula_and_stays_float32_under_autocast() -> None:
    pred = torch.tensor([0.5, -0.2, 0.1], dtype=torch.float16)
    target = torch.tensor([1.0, 0.5, -2.0])
    a, b = 3.0, 1.5
    expected = (
        sum(
            -(1 / (1 + math.exp(-a * r * p)) - 0.5) * abs(r) ** b
            for p, r in zip(pred.tolist(), target.tolist(), strict=True)
        )
        / 3
    )
    with torch.autocast("cpu", dtype=torch.float16):
        loss = gmadl_loss(pred, target, a=a, b=b)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-3)
    # the right direction lowers the loss, the wrong one raises it, larger moves weigh more
    right = gmadl_loss(torch.tensor([1.0]), torch.tensor([2.0]))
    wrong = gmadl_loss(torch.tensor([-1.0]), torch.tensor([2.0]))
    assert right < 0 < wrong
    with pytest.raises(ValueError, match=r"a and b must be > 0 \(got a=0.0, b=1.5\)"):
        gmadl_loss(pred, target, a=0.0)


def test_probsparse_with_every_query_active_is_full_attention() -> None:
    torch.manual_seed(0)
    attention = ProbSparseAttention(16, heads=2, factor=100)  # n_top = L: all queries active
    x = torch.randn(3, 10, 16)
    got = attention(x)
    q, k, v = attention.qkv(x).view(3, 10, 3, 2, 8).permute(2, 0, 3, 1, 4)
    full = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), -1) @ v
    expected = attention.out(full.transpose(1, 2).reshape(3, 10, 16))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_probsparse_lazy_queries_get_the_mean_of_values() -> None:
    torch.manual_seed(0)
    attention = ProbSparseAttention(16, heads=1, factor=1)  # n_top = ceil(ln(L+1)) = 4 of 40
    x = torch.randn(1, 40, 16)
    out = attention(x)
    assert out.shape == (1, 40, 16)
    # at least L - n_top rows are the same (the mean of values, projected)
    rows = {tuple(r.round(decimals=5).tolist()) for r in out[0]}
    assert len(rows) <= 1 + 4


def test_distilling_halves_the_sequence_and_the_model_is_small() -> None:
    assert DistillingLayer(8)(torch.randn(2, 32, 8)).shape == (2, 16, 8)
    model = Informer(3, d_model=32, layers=2)
    params = sum(p.numel() for p in model.parameters())
    assert 10_000 < params < 100_000
    assert model(torch.randn(5, 32, 3)).shape == (5,)
