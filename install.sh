#!/usr/bin/env bash
# Install appliance into ./.venv and put `appliance` on PATH. Safe to run again.
#
#   ./install.sh              the appliance itself, linked as ~/.local/bin/appliance
#   ./install.sh --dev        plus the test and lint dependencies
#   ./install.sh --test       --dev and a Docker engine, then every check CI runs: ruff, import contracts, mypy, the tests
#   --prefix DIR (or PREFIX=DIR)  link DIR/bin/appliance instead (default prefix: ~/.local)
#   --force                   replace an `appliance` there that is not this checkout's
#   --link-only               only the link: no venv, no pip (the venv is there already)
set -euo pipefail
cd "$(dirname "$0")"

dev=0 test=0 force=0 link_only=0
prefix=${PREFIX:-$HOME/.local}
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --test) dev=1 test=1 ;;
    --force) force=1 ;;
    --link-only) link_only=1 ;;
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a folder" >&2; exit 2; }; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '==> %s\n' "$*" >&2; }

if [ "$link_only" = 0 ]; then
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
fi

# Link `appliance` as $prefix/bin/appliance, never over another checkout's (unless --force).
ours="$PWD/.venv/bin/appliance"
[ -x "$ours" ] || { echo "install.sh: $ours is missing; run ./install.sh without --link-only first" >&2; exit 1; }
bin="${prefix%/}/bin"
link="$bin/appliance"
if [ -L "$link" ] || [ -e "$link" ]; then
  current=$(readlink -f "$link" 2>/dev/null || true)
  if [ "$current" != "$(readlink -f "$ours")" ] && [ "$force" = 0 ]; then
    if [ -L "$link" ] && [ ! -e "$link" ]; then
      say "replacing $link: it pointed at $(readlink "$link"), which no longer exists"
    else
      what="another appliance"
      [ -L "$link" ] && what="a link to another checkout's appliance ($(readlink "$link"))"
      echo "install.sh: $link is already $what; not replacing it (this checkout's is $ours)." >&2
      echo "  Keep both: ./install.sh --prefix DIR (links DIR/bin/appliance); or take it over: ./install.sh --force" >&2
      # Linking was the whole job of --link-only: it failed. Otherwise the install (and --test) goes on.
      [ "$link_only" = 1 ] && exit 1
      link=""
    fi
  fi
fi
if [ -n "$link" ]; then
  mkdir -p "$bin"
  ln -sfn "$ours" "$link"
  case ":$PATH:" in
    *":$bin:"*)
      found=$(command -v appliance || true)
      if [ "$found" = "$link" ]; then
        say "appliance is on PATH ($link)"
      else
        say "linked $link, but ${found:-another appliance} comes first on PATH; run $link, or put $bin first"
      fi ;;
    *)
      say "linked $link; $bin is not on PATH. Add it (and to ~/.bashrc or ~/.zshrc to keep it):"
      say "  export PATH=\"$bin:\$PATH\"" ;;
  esac
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

# The terminal UI's tests drive a real terminal (tmux) under load (wrk); the export tests build
# overlays with kubectl's kustomize.
ensure_tools() {
  local sudo="" missing=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  for tool in tmux wrk kubectl; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
  if [ -n "$missing" ]; then
    say "installing$missing (Debian packages)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null || {
      echo "install.sh: could not install$missing; the tests need them (kubectl: from your Kubernetes package source)" >&2
      exit 1; }
  fi
}

if [ "$test" = 1 ]; then
  ensure_docker
  ensure_tools
  say "ruff"
  .venv/bin/ruff check appliance tui tests examples
  say "import contracts"
  .venv/bin/lint-imports
  say "type check"
  .venv/bin/mypy
  say "tests"
  .venv/bin/python -m pytest
fi
