#!/usr/bin/env bash
# Build dist/appliance: one executable file with its own Python and every package (PyInstaller's
# one-dir build behind a small unpacking sh script), that runs on a Linux x86_64 machine without Python
# (glibc 2.36 or newer, as Debian 12's; sh, tail, tar and gzip, as every Debian has).
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

say "building dist/appliance with PyInstaller (about a minute)"
start=$(date +%s)
rm -f dist/.appliance.stamp
"$py" -m PyInstaller --noconfirm --log-level WARN --distpath build/onefile/out --workpath build/onefile \
  scripts/appliance.spec
# One file: a POSIX sh script, then the program folder as a gzipped tar. Its first run unpacks the folder
# into the user's cache, under this build's stamp; every run then starts the program from there (~0.1 s).
mkdir -p dist
build=${stamp:0:16}
cat > build/onefile/stub.sh <<STUB
#!/bin/sh
# appliance ($build), one file: this script, then the program (with its own Python) as a gzipped tar.
# The first run unpacks it into \$XDG_CACHE_HOME/appliance (~/.cache/appliance); later runs start it from there.
set -e
dir="\${APPLIANCE_CACHE:-\${XDG_CACHE_HOME:-\${HOME:-/tmp}/.cache}/appliance}/$build"
if [ ! -x "\$dir/appliance" ]; then
  mkdir -p "\${dir%/*}"
  tmp="\$dir.\$\$"
  rm -rf "\$tmp" && mkdir "\$tmp"
  tail -n +@LINES@ "\$0" | tar -xzf - -C "\$tmp"
  mv -T "\$tmp" "\$dir" 2>/dev/null || rm -rf "\$tmp"  # unpacked meanwhile by another run: that one serves
fi
exec "\$dir/appliance" "\$@"
STUB
lines=$(( $(wc -l < build/onefile/stub.sh) + 1 ))
sed -i "s/@LINES@/$lines/" build/onefile/stub.sh
{ cat build/onefile/stub.sh; tar -C build/onefile/out/appliance -cf - . | gzip -6; } > dist/appliance.tmp
chmod 755 dist/appliance.tmp
mv dist/appliance.tmp dist/appliance
echo "$stamp" > dist/.appliance.stamp
say "dist/appliance: $(du -h dist/appliance | cut -f1), built in $(( $(date +%s) - start )) s"
