"""Framework callbacks and tracker sinks (installed as carbon_callbacks.integrations)."""
