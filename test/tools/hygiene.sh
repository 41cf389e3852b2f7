#!/usr/bin/env bash
# hygiene.sh fails when the repository tracks what it must not: a file over
# 1 MiB outside testdata, or an executable binary (build outputs live in
# bin/, which .gitignore excludes).
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] || continue
  size=$(stat -c %s "$f")
  if (( size > 1048576 )) && [[ "$f" != */testdata/* ]]; then
    echo "hygiene: $f is $size bytes: no tracked file over 1 MiB outside testdata"
    fail=1
  fi
  if head -c 4 "$f" | grep -q $'^\x7fELF'; then
    echo "hygiene: $f is a compiled binary: build outputs go to bin/, never into git"
    fail=1
  fi
done < <(git ls-files -z)
if (( fail )); then exit 1; fi
echo "hygiene: $(git ls-files | wc -l) tracked files, none over 1 MiB outside testdata, no binary"
