#!/usr/bin/env bash
# Copies exported models and their contracts into the page's assets (web_demo/public/models/) and lists them in
# models/index.json, which the page reads to pick its default model. Models are never committed.
#
#   web_demo/scripts/copy_model.sh EXPORT_DIR [DEST]   # EXPORT_DIR: the --out of python -m tfalign.export, e.g.
#                                                       # exports/default; DEST defaults to web_demo/public/models
#
# The copying (contract required beside each model, stale models removed, atomic renames) is
# android_demo/scripts/copy_models.sh, shared by all three demos. Then run `npm run build` in web_demo.
# Exit code 2 on bad input.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: copy_model.sh EXPORT_DIR [DEST]" >&2; exit 2; }
dest="${2:-$here/../public/models}"
bash "$here/../../android_demo/scripts/copy_models.sh" --ext tflite "$1" "$dest"
# index.json: the copied model file names, sorted; written to a temporary file and renamed.
names=()
while IFS= read -r -d '' m; do names+=("$(basename "$m")"); done < <(find "$dest" -maxdepth 1 -name '*.tflite' -print0 | sort -z)
{
  printf '{"models": ['
  sep=""
  for n in "${names[@]}"; do printf '%s"%s"' "$sep" "$n"; sep=", "; done
  printf ']}\n'
} > "$dest/.index.json.tmp"
mv "$dest/.index.json.tmp" "$dest/index.json"
echo "copy_model.sh: ${#names[@]} model(s) in $dest: ${names[*]}"
