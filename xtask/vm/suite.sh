#!/bin/sh
# The vm-test suite, run by /init in the guest: the end-to-end test
# executables of the tests crate listed in /vm/tests ("<executable>
# [test name]"), run as on the host (libtest, one test at a time), each
# test reported as "VM-TEST PASS name" or "VM-TEST FAIL name: why". The
# xtask fails the run on any FAIL, on a missing DONE and on a timeout.
# libtest captures each test's output and prints it when the test fails:
# that goes to the console (target/vm/console.log).

info() { echo "VM-TEST INFO $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

info "kernel=$(uname -r)"
info "lsm=$(cat /sys/kernel/security/lsm 2>/dev/null || echo unreadable)"
if [ -e /sys/kernel/btf/vmlinux ]; then info "btf=present"; else info "btf=absent"; fi

export SENSOR_BIN=/usr/bin/sensor
export SENSOR_E2E_LOG=/tmp/e2e-log.txt
export SENSOR_E2E_STATUS_OUT=/tmp/status.txt
# SENSOR_E2E_EXPECT_METHODS: what this kernel must get (from the xtask).
set -a
. /vm/env
set +a
info "expect $SENSOR_E2E_EXPECT_METHODS"

while read -r bin name; do
    [ -n "$bin" ] || continue
    out=/tmp/$bin.out
    t0=$(uptime_s)
    if [ -n "$name" ]; then
        /e2e/"$bin" --exact "$name" --test-threads=1 >"$out" 2>&1
    else
        /e2e/"$bin" --test-threads=1 >"$out" 2>&1
    fi
    rc=$?
    info "time $bin${name:+ $name}: $t0 -> $(uptime_s) s uptime, exit $rc"
    # "test NAME ... ok" / "test NAME ... FAILED"
    sed -n 's/^test \([^ ]*\) \.\.\. ok$/VM-TEST PASS \1/p' "$out"
    sed -n 's/^test \([^ ]*\) \.\.\. FAILED$/VM-TEST FAIL \1: see its output above/p' "$out" >/tmp/failed
    ran=$(grep -c '^test .* \.\.\. \(ok\|FAILED\)$' "$out")
    if [ -s /tmp/failed ] || [ "$rc" != 0 ] || [ "$ran" = 0 ]; then
        sed "s/^/$bin| /" "$out"
        cat /tmp/failed
        if [ ! -s /tmp/failed ]; then
            echo "VM-TEST FAIL $bin: exit status $rc, $ran tests reported"
        fi
    fi
done </vm/tests

# A test that skips itself here (not root) would prove nothing.
if grep -q '^skipped ' "$SENSOR_E2E_LOG" 2>/dev/null; then
    grep '^skipped ' "$SENSOR_E2E_LOG" | sed 's/^/VM-TEST FAIL /'
fi
# Where a sensor start spends its time here (timestamps of its log).
if [ -s /tmp/status.log ]; then
    grep -E "process table seeded|program type not available|attach method chosen|TLS capture targets|sensor ready" /tmp/status.log |
        sed -e 's/\x1b\[[0-9;]*m//g' | cut -c1-160 | sed 's/^/VM-TEST INFO start: /'
fi
if [ -s "$SENSOR_E2E_STATUS_OUT" ]; then
    echo "VM-TEST STATUS BEGIN"
    cat "$SENSOR_E2E_STATUS_OUT"
    echo "VM-TEST STATUS END"
fi
