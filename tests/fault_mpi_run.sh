#!/bin/sh
# Runs fault_mpi_test under mpirun for every phase (dispatch, mid, combine over the transport;
# shm-dispatch, shm-combine on the dispatcher's shared-memory path) of one fault kind and
# judges by the survivors' report lines (fault_mpi_test.cc): exactly NP-1 "FAULT PASS" lines and
# no "FAULT FAIL" per run. --enable-recovery keeps Open MPI 4.1's mpirun from tearing the job down
# when the victim dies, so every survivor gets to report; `timeout` is the hard limit per run.
#   fault_mpi_run.sh MPIRUN FAULT_MPI_TEST NP stall|kill [mpi|ucx]
set -u
mpirun=$1 binary=$2 np=$3 fault=$4 backend=${5:-mpi}
status=0
for at in dispatch mid combine shm-dispatch shm-combine; do
  out=$(timeout 60 "$mpirun" --enable-recovery --oversubscribe -np "$np" "$binary" \
        --fault "$fault" --at "$at" --deadline-ms 1000 --backend "$backend" 2>&1)
  rc=$?
  printf '== %s %s at %s, %s ranks (mpirun rc %s)\n%s\n' "$backend" "$fault" "$at" "$np" "$rc" "$out"
  if printf '%s\n' "$out" | grep -q '^FAULT SKIP'; then
    echo "SKIPPED: $(printf '%s\n' "$out" | grep '^FAULT SKIP' | head -1)"
    exit 0
  fi
  passes=$(printf '%s\n' "$out" | grep -c '^FAULT PASS')
  fails=$(printf '%s\n' "$out" | grep -c '^FAULT FAIL')
  if [ "$rc" -eq 124 ] || [ "$passes" -ne $((np - 1)) ] || [ "$fails" -ne 0 ]; then
    echo "FAILED: $fault at $at: $passes of $((np - 1)) survivors passed, $fails failed, rc $rc"
    status=1
  fi
done
exit $status
