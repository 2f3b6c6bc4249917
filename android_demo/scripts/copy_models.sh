#!/usr/bin/env bash
# Copies exported models and their contracts into a demo app (models are never committed).
#
#   copy_models.sh [--ext tflite|mlpackage] EXPORT_DIR DEST_DIR
#
# Finds every MODEL.<ext> under EXPORT_DIR (the --out folder of `python -m tfalign.export`), requires the
# MODEL.contract.json written beside it, and mirrors the pairs into DEST_DIR: stale models from an earlier export
# are removed, each file is copied to a temporary name and renamed, so the app never sees half a model.
# Used by the Android `copyModels` Gradle task and ios_demo/scripts/copy_models.sh. Exit code 2 on bad input.
set -euo pipefail
ext=tflite
if [ "${1:-}" = "--ext" ]; then ext="${2:-}"; shift 2; fi
usage="usage: copy_models.sh [--ext tflite|mlpackage] EXPORT_DIR DEST_DIR"
case "$ext" in tflite|mlpackage) ;; *) echo "copy_models.sh: --ext must be tflite or mlpackage, got '$ext'" >&2; exit 2 ;; esac
[ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
export_dir="$1"; dest="$2"
if [ ! -d "$export_dir" ]; then
  echo "copy_models.sh: export folder '$export_dir' not found; run 'python -m tfalign.export --target $([ "$ext" = tflite ] && echo tflite || echo coreml) --out $export_dir' first" >&2
  exit 2
fi
models=()
while IFS= read -r -d '' m; do models+=("$m"); done < <(find "$export_dir" -maxdepth 4 -name "*.$ext" -print0 | sort -z)
if [ ${#models[@]} -eq 0 ]; then
  echo "copy_models.sh: no *.$ext in '$export_dir'" >&2
  exit 2
fi
declare -A seen=()
for m in "${models[@]}"; do
  name="$(basename "$m" ".$ext")"
  contract="$(dirname "$m")/$name.contract.json"
  [ -f "$contract" ] || { echo "copy_models.sh: $m has no contract beside it (expected $contract)" >&2; exit 2; }
  [ -z "${seen[$name]:-}" ] || { echo "copy_models.sh: two models named '$name' ($m and ${seen[$name]}); export them to separate names" >&2; exit 2; }
  seen[$name]="$m"
done
mkdir -p "$dest"
# Remove models (and contracts) of an earlier export that this one no longer has.
for old in "$dest"/*."$ext" "$dest"/*.contract.json; do
  [ -e "$old" ] || continue
  base="$(basename "$old")"; base="${base%.contract.json}"; base="${base%.$ext}"
  [ -n "${seen[$base]:-}" ] || rm -rf "$old"
done
for name in "${!seen[@]}"; do
  m="${seen[$name]}"
  for src in "$m" "$(dirname "$m")/$name.contract.json"; do
    target="$dest/$(basename "$src")"
    tmp="$dest/.$(basename "$src").tmp$$"
    rm -rf "$tmp"
    cp -R "$src" "$tmp"
    rm -rf "$target"
    mv "$tmp" "$target"
  done
  echo "copied $name.$ext + $name.contract.json -> $dest"
done
