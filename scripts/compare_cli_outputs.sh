#!/bin/bash
# compare_cli_outputs.sh A B: the two recordings are identical once timing fields are masked.
norm() {
  sed -E 's/"(elapsed_ms|prefill_ms|decode_ms|decode_tokens_per_s)": [0-9.e+-]+/"\1": T/g;
          s/[0-9]+(\.[0-9]+)? ms, /T ms, /g; s/[0-9]+ tok\/s/T tok\/s/g' "$1"
}
bad=0
for f in $(cd $1 && find . -type f | sort); do
  if ! cmp -s <(norm $1/$f) <(norm $2/$f); then echo "DIFFERS: $f"; bad=1; fi
done
[ "$(cd $1 && find . -type f | sort)" == "$(cd $2 && find . -type f | sort)" ] || { echo "file lists differ"; bad=1; }
[ $bad == 0 ] && echo "identical (timing aside): $(cd $1 && find . -type f | wc -l) files"
