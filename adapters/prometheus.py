"""The Prometheus exporter (extra ``metrics``).

.. code-block:: python

    from regulator.adapters.prometheus import MetricsExporter, start_metrics_server
"""

from ._prometheus import MetricsExporter as MetricsExporter
from ._prometheus import start_metrics_server as start_metrics_server

__all__ = ["MetricsExporter", "start_metrics_server"]
