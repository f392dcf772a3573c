"""``python -m regulator.adapters.cli``: the same as the ``regulator`` command."""

import sys

from ._main import main

sys.exit(main())
