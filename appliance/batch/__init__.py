"""Batch jobs: mini-batches planned (pure), a ledger in the registry, workers with retries and
timeouts, outputs in Azure's format, resumed after a crash."""
