# Sourced by bootstrap.sh and test.sh: run a long step with a progress line every few seconds, so that
# nobody stares at a silent terminal while pip, apt or cargo work with their output in a log.

# The last line of a step's log that says where it is (pip, cargo, apt).
latest() {
  grep -E '^ *(Compiling|Collecting|Downloading|Installing|Building|Processing|Successfully|Unpacking|Setting up|Get:|Finished)' "$1" 2>/dev/null |
    tail -n 1 | cut -c1-90 | sed 's/^ */: /' || true
}

# progress WHAT LOG CMD...: run CMD with its output in LOG; every DISTILX_PROGRESS_EVERY seconds (5)
# print "WHAT: N s: <the log's latest step>"; returns CMD's status.
progress() {
  local what=$1 log=$2
  shift 2
  local start=$SECONDS last=$SECONDS pid
  mkdir -p "$(dirname "$log")"
  "$@" > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - last >= ${DISTILX_PROGRESS_EVERY:-5} )); then
      last=$SECONDS
      echo "$what: $((SECONDS - start)) s$(latest "$log")"
    fi
  done
  wait "$pid"
}
