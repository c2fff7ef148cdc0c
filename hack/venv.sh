#!/usr/bin/env bash
# Creates (once) the Python virtualenv for the AWS emulator and the test environment, keyed by
# the hash of emulator/requirements.txt and kept outside the repository. Prints its path.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
req="$repo/emulator/requirements.txt"
CACHE_ROOT="${ACCOUNT_LINKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/account-linker}"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="$CACHE_ROOT/venv-$hash"
if [[ ! -f "$venv/.complete" ]]; then
  echo "venv: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
