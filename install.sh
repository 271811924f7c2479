#!/usr/bin/env bash
# Install appliance into ./.venv and put `appliance` on PATH. Safe to run again.
#
#   ./install.sh          the appliance itself
#   ./install.sh --dev    plus the test and lint dependencies
#   ./install.sh --test   --dev and a Docker engine, then every check CI runs: ruff, import contracts, the tests
set -euo pipefail
cd "$(dirname "$0")"

dev=0 test=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --test) dev=1 test=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (use --dev or --test)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: appliance needs Python 3.11 or newer ($python is $("$python" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi

[ -x .venv/bin/python ] || { say "creating .venv"; "$python" -m venv .venv; }
extra=""
[ "$dev" = 1 ] && extra="[dev]"
say "installing appliance${extra} into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"

# Link `appliance` into the first writable folder on PATH among these; else say how.
bin=""
for dir in "$HOME/.local/bin" /usr/local/bin; do
  case ":$PATH:" in *":$dir:"*) [ -w "$dir" ] && { bin=$dir; break; } ;; esac
done
if [ -n "$bin" ]; then
  ln -sf "$PWD/.venv/bin/appliance" "$bin/appliance"
  say "appliance is on PATH ($bin/appliance)"
else
  mkdir -p "$HOME/.local/bin"
  ln -sf "$PWD/.venv/bin/appliance" "$HOME/.local/bin/appliance"
  say "appliance is at $HOME/.local/bin/appliance; put it on PATH with: export PATH=\"\$HOME/.local/bin:\$PATH\""
fi

# The Docker tests need a real engine, debootstrap (base images without a registry) and a registry
# to push to: installed from Debian's packages and started here when missing.
ensure_docker() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-registry >/dev/null; then
    say "installing the Docker engine, debootstrap and docker-registry (Debian packages)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io debootstrap docker-registry >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    say "starting the Docker engine"
    $sudo sh -c 'nohup dockerd > /tmp/appliance-dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "install.sh: dockerd did not start (see /tmp/appliance-dockerd.log)" >&2; exit 1; }
  fi
}

if [ "$test" = 1 ]; then
  ensure_docker
  say "ruff"
  .venv/bin/ruff check appliance tui tests examples
  say "import contracts"
  .venv/bin/lint-imports
  say "tests"
  .venv/bin/python -m pytest
fi
