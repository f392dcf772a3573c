"""The redaction policy, as the wing uses it (it lives in ``adapters/_redact.py``, shared with
the metrics exporter and the hosts, so every channel masks by the same rules)."""

from __future__ import annotations

from .._redact import MASK as MASK
from .._redact import RedactionPolicy as RedactionPolicy
from .._redact import guard_third_party_logs as guard_third_party_logs
from .._redact import redact as redact
from .._redact import redact_url as redact_url
from .._redact import redaction_policy as redaction_policy

__all__ = [
    "MASK",
    "RedactionPolicy",
    "guard_third_party_logs",
    "redact",
    "redact_url",
    "redaction_policy",
]
