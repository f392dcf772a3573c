"""Snapshot, restore and pickling of any Machine: the state and the host's fields come back,
no initial-state entry runs, and the copy runs on the engine on its own."""

from __future__ import annotations

import copy
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "docs" / "examples"))
from order_lifecycle import OrderLifecycle


def _paid() -> Any:
    order = OrderLifecycle(items=2, total=25.0)
    order.place()
    order.send("pay", amount=25.0)
    return order


def test_snapshot_restore_round_trip() -> None:
    order = _paid()
    data = json.loads(json.dumps(order.snapshot()))
    assert data == {
        "version": 1,
        "machine": "OrderLifecycle",
        "state": "paid",
        "fields": {"items": 2, "total": 25.0, "charged": 25.0},
    }
    restored = OrderLifecycle.restore(data)
    assert type(restored) is OrderLifecycle  # restore returns the class it is called on (Self)
    assert restored.current_state_value == "paid" and restored.charged == 25.0
    assert restored.log == []  # no entry callback ran on restore
    assert restored.refund(amount=5.0) == "refunded 5"
    assert order.charged == 25.0 and restored.charged == 20.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "snapshot.version: must be 1"),
        ({"machine": "Other"}, "snapshot.machine: must be 'OrderLifecycle'"),
        ({"state": "lost"}, "snapshot.state: must be one of 'draft'"),
    ],
)
def test_a_bad_snapshot_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OrderLifecycle.restore({**_paid().snapshot(), **change})


def test_pickle_and_deepcopy_run_on_their_own() -> None:
    order = _paid()
    for twin in (pickle.loads(pickle.dumps(order)), copy.deepcopy(order)):
        assert twin.current_state_value == "paid" and twin._fast
        twin.ship(address="x")
        assert twin.is_terminated and twin.log[-1] == "paid --ship--> shipped"
    assert order.current_state_value == "paid" and not order.is_terminated
