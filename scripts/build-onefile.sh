#!/usr/bin/env bash
# Build dist/appliance: one executable with its own Python and every package (PyInstaller one-file),
# that runs on a Linux x86_64 machine without Python (glibc 2.36 or newer, as Debian 12's).
#
#   scripts/build-onefile.sh          build, unless dist/appliance is already this tree's build
#   scripts/build-onefile.sh --force  build again
#
# Uses ./.venv (./install.sh makes it) and installs PyInstaller there when missing. The inputs'
# hash (sources, this script, the spec, the venv's packages) is kept beside the binary, in
# dist/.appliance.stamp: an unchanged tree is not built twice.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0
case "${1:-}" in
  --force) force=1 ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  "") ;;
  *) echo "build-onefile.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
say() { printf '==> %s\n' "$*" >&2; }

py=.venv/bin/python
[ -x "$py" ] || { echo "build-onefile.sh: no .venv here; run ./install.sh first" >&2; exit 1; }
if ! "$py" -c 'import PyInstaller' 2>/dev/null; then
  say "installing PyInstaller into .venv"
  "$py" -m pip install --quiet --disable-pip-version-check 'pyinstaller>=6.10,<7'
fi

stamp=$( { find appliance tui -type f \( -name '*.py' -o -name '*.sql' -o -name '*.json' -o -name '*.tcss' \) \
             -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum;
           sha256sum pyproject.toml scripts/build-onefile.sh scripts/appliance.spec scripts/onefile_entry.py;
           "$py" -m pip freeze --disable-pip-version-check 2>/dev/null; } | sha256sum | cut -d' ' -f1)
if [ "$force" = 0 ] && [ -x dist/appliance ] && [ "$(cat dist/.appliance.stamp 2>/dev/null)" = "$stamp" ]; then
  say "dist/appliance is up to date ($(du -h dist/appliance | cut -f1)); --force builds it again"
  exit 0
fi

say "building dist/appliance with PyInstaller (a few minutes)"
start=$(date +%s)
rm -f dist/.appliance.stamp
"$py" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/onefile scripts/appliance.spec
echo "$stamp" > dist/.appliance.stamp
say "dist/appliance: $(du -h dist/appliance | cut -f1), built in $(( $(date +%s) - start )) s"
