#!/usr/bin/env bash
# .ci/slurm-down.sh - stop the daemons that .ci/slurm-up.sh started (nothing else).
# Only PIDs recorded in $LOCAL_SLURM_DIR/pids/ are signalled, and only if the
# process behind the PID still has the expected name (guards against PID reuse).
#   --purge   also delete $LOCAL_SLURM_DIR (state, logs)
set -uo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
CLUSTER=${LOCAL_SLURM_CLUSTER:-localcluster}
log() { printf '[local-slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }

pid_of() { # NAME -> prints pid if pidfile names a live process called NAME
  local f="$DIR/pids/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ] || return 1
  echo "$pid"
}

descendants() { # PID -> every descendant pid (job processes of a slurmstepd)
  local table frontier=$1 next out="" f
  table=$(ps -eo pid=,ppid=)
  while [ -n "$frontier" ]; do
    next=""
    for f in $frontier; do
      next+=" $(awk -v p="$f" '$2==p{print $1}' <<<"$table")"
    done
    next=$(echo $next)
    [ -n "$next" ] && out+=" $next"
    frontier=$next
  done
  echo $out
}

# Cancel jobs still in our cluster so no slurmstepd is left behind.
# (output captured first: with pipefail, grep -q closing the pipe early would
#  make the pipeline "fail" with SIGPIPE)
conf=$(scontrol show config 2>/dev/null || true)
if pid_of slurmctld >/dev/null && grep -qE "^ClusterName +=  *$CLUSTER\$" <<<"$conf"; then
  jobs=$(squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -o '%i' 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 40); do
      [ -z "$(squeue -h -t RUNNING,COMPLETING -o '%i' 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

rc=0
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  f="$DIR/pids/$name.pid"
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name pid $pid ignored SIGTERM for 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  elif [ -e "$f" ]; then
    log "$name: stale pid file, process already gone"
  elif ps -C "$name" >/dev/null 2>&1; then
    log "$name: running but not started by .ci/slurm-up.sh, leaving it alone"
  fi
  rm -f "$f"
done

# A job step whose slurmd is gone would linger. Ours inherit slurmd's open
# log file (an fd pointing into $DIR), so only those are touched.
for p in $(ps -C slurmstepd -o pid= 2>/dev/null); do
  fds=$(ls -l "/proc/$p/fd" 2>/dev/null || true)
  if grep -qF "$DIR/" <<<"$fds"; then
    kids=$(descendants "$p")
    log "killing leftover slurmstepd pid $p and its job processes:${kids:- none}"
    kill -STOP "$p" 2>/dev/null || true          # no respawn/cleanup races
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -KILL $kids 2>/dev/null
    kill -KILL "$p" 2>/dev/null || true
  fi
done

if [ "${1:-}" = "--purge" ]; then
  rm -rf "$DIR"; log "purged $DIR"
fi
exit $rc
