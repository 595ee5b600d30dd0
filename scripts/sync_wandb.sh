#!/usr/bin/env bash
# Upload offline W&B runs to the server once a network is available.
#   bash scripts/sync_wandb.sh                 every offline run under outputs/
#   bash scripts/sync_wandb.sh outputs/train   only those below a folder
# Needs `wandb login` (or WANDB_API_KEY) first. Already-synced runs are skipped by wandb.
set -euo pipefail
root="${1:-outputs}"
mapfile -t runs < <(find "$root" -type d -name 'offline-run-*' | sort)
if [ "${#runs[@]}" -eq 0 ]; then
  echo "no offline W&B runs below $root" >&2
  exit 1
fi
wandb sync "${runs[@]}"
