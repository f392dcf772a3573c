"""A float16 AMP training loop with the guarded scaler: one changed line.

Run: python docs/examples/guarded_training.py   (CPU is fine: torch.autocast("cpu", float16))
"""

import torch
import torch.nn.functional as F
from regulator.adapters.torch import GuardedGradScaler, check_finite
from regulator.fsm import ScalerConfig
from torch import nn

torch.manual_seed(0)
x, y = torch.randn(256, 16), torch.randn(256, 1)
check_finite((x, y))  # R3.4: NaN/Inf in the data fail here, with batch and field
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
device = "cpu"

# before: scaler = torch.amp.GradScaler(device)
scaler = GuardedGradScaler(device, model=model, config=ScalerConfig())  # the one changed line

for _epoch in range(3):
    for i in range(0, len(x), 32):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16):
            loss = F.mse_loss(model(x[i : i + 32]), y[i : i + 32])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    scaler.end_epoch()  # logs the epoch line (R2.5), counts epochs over threshold (R2.3)

stats = scaler.get_statistics()
print(scaler.state, stats["current_scale"], stats["steps"], stats["overflow_count"])
assert stats["steps"] == 24 and scaler.state in ("stable", "warmup")
