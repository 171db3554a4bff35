#!/bin/sh
# The one-shot `models` service of compose: fill the model volume, once.
#
# A volume whose model set(s) verify (hashes re-checked) is kept as it is; otherwise the set is
# written anew:
#   CMET_MODELS_SOURCE=official  `cmet models pull`: the published weights (network, several GB;
#                                CMET_HF_ENDPOINT names a hub mirror, HF_TOKEN a token)
#   CMET_MODELS_SOURCE=tiny      `cmet models make-tiny`: a tiny random set to smoke-test the
#                                stack without downloading (its output is noise)
set -eu

dir="${CMET_MODELS_DIR:-/models}"
source="${CMET_MODELS_SOURCE:-official}"

case "$source" in
    official | tiny) ;;
    *) echo "models: CMET_MODELS_SOURCE must be official or tiny, not '$source'" >&2; exit 2 ;;
esac

if cmet models verify --no-load --dir "$dir"; then
    echo "models: the set(s) in $dir verify; kept"
    exit 0
fi

echo "models: no verified set in $dir; writing the $source set"
if [ "$source" = tiny ]; then
    exec cmet models make-tiny "$dir/tiny" --force
fi
exec cmet models pull --dir "$dir" --force
