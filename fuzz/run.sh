#!/usr/bin/env bash
# Runs every fuzz target (or those named in FUZZ_TARGETS) for SECONDS each
# (default 300) with cargo-fuzz on stable Rust, and prints libFuzzer's
# figures per target. Not part of scripts/test.sh.
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`), a C++ compiler
# (libFuzzer is built from source), openssl and python3-cryptography (for
# the seeds). Stable rustc accepts cargo-fuzz's -Z flags only with
# RUSTC_BOOTSTRAP=1; `-s none` builds without a sanitizer (the code is
# safe Rust: `unsafe_code = "forbid"`), `-a` keeps debug assertions and
# overflow checks on in the optimised build, so arithmetic overflow is a
# crash too. Crashes land in fuzz/artifacts/TARGET/; the corpus grows in
# fuzz/corpus/TARGET/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
read -r -a targets <<< "${FUZZ_TARGETS:-smtp_command data_reader address subject_dn cert_import subscription edgesync_message}"
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

python3 seeds.py
cargo fuzz build -s none -a
mkdir -p logs
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    echo "== $target: ${seconds}s"
    set +e
    cargo fuzz run -s none -a "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
        -max_len=65536 -timeout=10 >"logs/$target.log" 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        status=1
        echo "   FAILED (exit $rc): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
    fi
    # libFuzzer's last status line (cov, ft, corp) and final stats.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "logs/$target.log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "logs/$target.log" || true
    echo "   corpus: $(find "corpus/$target" -type f | wc -l) files, crashes: $(find "artifacts/$target" -type f | wc -l)"
done
exit $status
