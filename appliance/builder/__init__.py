"""Environment → venv (process runtime) or image (docker runtime); Dockerfile rendering; packaging."""
