"""`appliance up`: the Litestar app, control API handlers, start-up reconcile, graceful shutdown."""
