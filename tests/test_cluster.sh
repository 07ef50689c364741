#!/usr/bin/env bash
# make test-cluster: the pipeline on a real, single-node SLURM brought up on this machine, then torn down.
#   1. slurmctld, slurmd, srun and munged from Debian's packages (apt-get install when missing; needs root)
#   2. munged and both SLURM daemons on localhost, every file (key, slurm.conf, state, logs) in one temp folder
#   3. the smoke data; `make -j2 all SEEDS="0 1" PROFILE=smoke LAUNCH="srun -N1 -n1"` and the same run serially
#   4. tests/check_cluster.py: every per-seed stage ran as a SLURM job (its manifest's SLURM job id, the job
#      completion log), and the cluster run's metrics equal the serial run's (wall times excluded)
#   5. teardown (daemons stopped, temp folder removed) also on failure or Ctrl-C
# `bash tests/test_cluster.sh --up-only`: steps 1, 2 and 5 only (does SLURM come up on this machine?).
# Where SLURM cannot start (no root to install, a container that refuses the daemons) it says why in one line and
# exits non-zero: it never reports a pass it did not see.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
W=$(mktemp -d /tmp/unlearn-slurm.XXXXXX)
chmod 755 "$W"
export SLURM_CONF=$W/slurm.conf
say() { echo "test-cluster: $*"; }
fail() { echo "test-cluster: FAILED: $*" >&2; exit 1; }
teardown() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    for f in slurmctld.log slurmd.log munged.log; do
      [ -f "$W/$f" ] && { echo "--- last lines of $f"; tail -n 5 "$W/$f"; } >&2
    done
  fi
  for p in slurmd slurmctld munged; do
    [ -f "$W/$p.pid" ] && kill "$(cat "$W/$p.pid")" 2>/dev/null || true
  done
  sleep 1
  for p in slurmd slurmctld munged; do
    [ -f "$W/$p.pid" ] && kill -9 "$(cat "$W/$p.pid")" 2>/dev/null || true
  done
  rm -rf "$W"
  [ $rc -eq 0 ] && say "torn down (daemons stopped, $W removed)"
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

# 1. the packages
missing() { for c in slurmctld slurmd srun sinfo munged; do command -v $c >/dev/null || return 0; done; return 1; }
if missing; then
  [ "$(id -u)" = 0 ] || fail "slurmctld/slurmd/srun/munged are not installed and only root can install them: run as root, or apt-get install slurmctld slurmd slurm-client munge"
  command -v apt-get >/dev/null || fail "slurmctld/slurmd/munge are missing and there is no apt-get here: install SLURM and munge by hand"
  say "installing slurmctld slurmd slurm-client munge (apt-get)"
  pk="slurmctld slurmd slurm-client munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pk >"$W/apt.log" 2>&1 ||
    { apt-get update -q >>"$W/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pk >>"$W/apt.log" 2>&1; } ||
    fail "apt-get could not install $pk: $(tail -n 1 "$W/apt.log")"
fi
say "$(slurmctld -V), munge $(munged -V 2>&1 | awk '{print $1}' | head -n 1)"

# 2. the daemons
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
host=$(hostname -s)
mkdir -p "$W/state" "$W/spool" "$W/munge"
chmod 700 "$W/munge"
dd if=/dev/urandom of="$W/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$W/munge/munge.key"
munged --force --key-file="$W/munge/munge.key" --socket="$W/munge/munge.sock" --pid-file="$W/munged.pid" \
  --log-file="$W/munged.log" --seed-file="$W/munge/munged.seed" >"$W/munged.out" 2>&1 ||
  fail "munged would not start: $(tail -n 1 "$W/munged.out")"
cat >"$SLURM_CONF" <<CONF
ClusterName=unlearntest
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/munge/munge.sock
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$W/jobcomp.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -i >"$W/slurmctld.out" 2>&1 || fail "slurmctld would not start: $(tail -n 1 "$W/slurmctld.out")"
slurmd >"$W/slurmd.out" 2>&1 || fail "slurmd would not start: $(tail -n 1 "$W/slurmd.out"; tail -n 1 "$W/slurmd.log" 2>/dev/null)"
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
  [ "$state" = idle ] && break
  sleep 1
done
[ "${state:-}" = idle ] || fail "the SLURM node did not come up (state '${state:-none}'): $(tail -n 1 "$W/slurmd.log" 2>/dev/null)"
srun -N1 -n1 true || fail "srun could not run a job on the test node: $(tail -n 1 "$W/slurmd.log")"
say "SLURM up: controller and node $host, $(nproc) CPUs, partition test; srun works"
[ "${1:-}" = --up-only ] && exit 0

# 3. the pipeline, through srun and serially
cd "$REPO"
"$PY" tests/fake_data.py kaggle "$W/data" --per-class 60 >/dev/null
VARS=(PROFILE=smoke DATA_SOURCE=kaggle DATA_DIR="$W/data" DEVICE=cpu WANDB=0 SEEDS="0 1" SETTINGS=official THREADS=1)
t0=$(date +%s)
make --no-print-directory -j2 all "${VARS[@]}" RESULTS="$W/cluster" CACHE_DIR="$W/cache-cluster" \
  LAUNCH="srun -N1 -n1" >"$W/cluster.log" 2>&1 || { tail -n 20 "$W/cluster.log"; fail "make -j2 through srun failed"; }
t1=$(date +%s)
make --no-print-directory all "${VARS[@]}" RESULTS="$W/serial" CACHE_DIR="$W/cache-serial" >"$W/serial.log" 2>&1 ||
  { tail -n 20 "$W/serial.log"; fail "the serial make failed"; }
t2=$(date +%s)
say "make -j2 through srun: $((t1 - t0)) s; serial make (no SLURM): $((t2 - t1)) s"

# 4. the checks
"$PY" tests/check_cluster.py "$W/cluster" "$W/serial" "$W/jobcomp.log" 0 1
say "passed"
