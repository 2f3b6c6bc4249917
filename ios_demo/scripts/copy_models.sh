#!/usr/bin/env bash
# Copies the CoreML export (NAME.mlpackage + NAME.contract.json) into ios_demo/TFAlignDemo/Models.
#   ios_demo/scripts/copy_models.sh [EXPORT_DIR [DEST_DIR]]
#   EXPORT_DIR defaults to exports/coreml of the repository, DEST_DIR to ios_demo/TFAlignDemo/Models.
# The copying (contract checks, stale-model removal, atomic renames) is android_demo/scripts/copy_models.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../../android_demo/scripts/copy_models.sh" --ext mlpackage "${1:-$here/../../exports/coreml}" \
  "${2:-$here/../TFAlignDemo/Models}"
