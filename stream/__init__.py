"""Adapters that run the system: settings, topics, the Faust worker, the CLI, local services."""
