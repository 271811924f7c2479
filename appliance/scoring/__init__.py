"""The worker that runs inside an instance: model loaders, Azure /score and Open Inference Protocol
routes, swagger. Light on purpose: it ships in every image."""
