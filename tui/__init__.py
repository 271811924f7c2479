"""The terminal UI: a client of the control API, like k9s of the Kubernetes API."""
