"""Request log writer (batched, off the event loop), metrics queries, Prometheus, resource sampling."""
