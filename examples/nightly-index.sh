#!/usr/bin/env bash
# Keep a photo index equal to its folder, every night (or every hour): new and changed photos are embedded,
# renamed ones are recognised by content, deleted ones leave the index. A re-run over an unchanged folder
# encodes nothing and rewrites nothing.
#
#   crontab -e
#   30 2 * * *  /path/to/nightly-index.sh /srv/photos >> ~/.local/state/mmtools-nightly.log 2>&1
#
# Environment: MMTOOLS_MODEL (the model; keep it the same every night), MMTOOLS_CACHE_DIR (the embedding
# cache, default ~/.cache/mmtools), INDEX (default: PHOTOS/.mmtools/idx.faiss, so it moves with the folder).
set -euo pipefail

photos=${1:?usage: nightly-index.sh PHOTO_FOLDER}
index=${INDEX:-$photos/.mmtools/idx.faiss}   # a hidden folder: embed-images does not walk into it
mkdir -p "$(dirname "$index")"

# cron's PATH is short; add where pip --user and virtual environments put mmtools.
export PATH="$HOME/.local/bin:/usr/local/bin:$PATH"

# Ids and paths relative to the folder (--root), so the index stays valid if the folder moves. A second
# run started while this one writes waits for it (give up after an hour rather than pile up).
status=0
mmtools -q embed-images --root "$photos" "$photos" \
  | mmtools index -o "$index" --sync --root "$photos" --lock-timeout 3600 || status=$?

# Exit status (with pipefail, the worse of the two): 0 all done; 1 some photos were skipped (each named
# on stderr: corrupt, unreadable...), the rest is indexed; 3 nothing could be done (e.g. no model);
# 130 stopped by a signal (the old index is intact; the next run picks up where this one left off,
# since embeddings already computed are cached).
case $status in
  0) ;;
  1) echo "$(date -Is) indexed, some photos skipped (see above)" >&2 ;;
  *) echo "$(date -Is) indexing failed with status $status" >&2; exit "$status" ;;
esac
