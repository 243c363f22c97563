#!/usr/bin/env bash
# Prints the real path of a Python 3.12 interpreter (the Lambda runtime's version).
# uv cannot download Pythons here and trips over pyenv's shims, so give it the real file.
set -euo pipefail
if command -v pyenv >/dev/null 2>&1; then
  version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -1 || true)
  if [[ -n "${version}" ]]; then
    PYENV_VERSION="${version}" pyenv which python3.12
    exit 0
  fi
fi
for candidate in python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
  path=$(command -v "${candidate}" 2>/dev/null || true)
  if [[ -n "${path}" && "${path}" != *"/shims/"* ]] && "${path}" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    realpath "${path}"
    exit 0
  fi
done
echo "Python 3.12 not found: install it (pyenv install 3.12, or your distribution's python3.12)" >&2
exit 1
