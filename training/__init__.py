"""Connector training (`cmet-train`): configs, data layouts and pairs, the trainer, evaluation,
feature preparation, export to the connector registry, and the synthetic benchmark."""
