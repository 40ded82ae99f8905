#!/usr/bin/env bash
# Check the systemd unit: it must parse cleanly (with and without the command-launcher
# drop-in) and its offline security exposure must stay at or below MAX_EXPOSURE.
#
# Usage: systemd/check.sh
# Exits non-zero on any failure. Needs systemd-analyze >= 250 (for --offline); when it
# is missing and the script runs as root, the Debian `systemd` package is installed.
set -euo pipefail

# `systemd-analyze security --threshold=N` compares N with the overall exposure in
# tenths (the 0.0-10.0 figure it prints times ten) and fails only when the exposure is
# strictly greater, so 15 accepts anything up to and including 1.5.
readonly MAX_EXPOSURE_TENTHS=15

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly unit="$here/agentcron.service"
readonly dropin="$here/command-launcher.conf.example"
work=""  # scratch directory, set in main

fail() {
    echo "check.sh: $*" >&2
    exit 1
}

ensure_systemd_analyze() {
    command -v systemd-analyze >/dev/null && return
    if [[ $EUID -ne 0 ]]; then
        fail "systemd-analyze not found; install it (Debian: apt-get install systemd) or run as root"
    fi
    echo "systemd-analyze not found; installing Debian's systemd package"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd
    command -v systemd-analyze >/dev/null || fail "systemd-analyze still missing after install"
}

ensure_offline_support() {
    # --offline=yes (analyse unit files without a running manager) appeared in systemd 250.
    systemd-analyze --help | grep -q -- '--offline' ||
        fail "$(systemd-analyze --version | head -n 1) lacks 'security --offline'; need systemd >= 250"
}

# Print the path of an executable to stand in for ExecStart=: the installed agentcron
# if there is one, else a stub in $1. verify rejects a unit whose binary is missing,
# which would hide every other finding.
agentcron_binary() {
    local found
    if found="$(command -v agentcron)"; then
        echo "$found"
        return
    fi
    printf '#!/bin/sh\nexit 0\n' >"$1/agentcron"
    chmod 0755 "$1/agentcron"
    echo "$1/agentcron"
}

# Run a systemd-analyze command that must succeed without printing anything: verify
# reports unknown keys and unparsable values on stderr yet still exits 0.
run_silent() {
    local output
    if ! output="$("$@" 2>&1)"; then
        echo "$output" >&2
        fail "failed: $*"
    fi
    if [[ -n $output ]]; then
        echo "$output" >&2
        fail "warnings from: $*"
    fi
}

# Print the overall exposure figure of unit file $1, failing above the threshold or on
# any warning (the table goes to stdout, parse warnings to stderr).
exposure_of() {
    local output status=0
    output="$(systemd-analyze security --no-pager --offline=yes \
        --threshold="$MAX_EXPOSURE_TENTHS" "$1" 2>"$work/security.err")" || status=$?
    if [[ -s $work/security.err ]]; then
        cat "$work/security.err" >&2
        fail "warnings from security analysis of $1"
    fi
    local summary
    summary="$(grep -E 'Overall exposure level for' <<<"$output" || true)"
    if [[ $status -ne 0 || -z $summary ]]; then
        echo "$output" >&2
        fail "security analysis of $1 failed or exposure is above $MAX_EXPOSURE_TENTHS tenths"
    fi
    sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/' <<<"$summary"
}

main() {
    ensure_systemd_analyze
    ensure_offline_support
    echo "using $(systemd-analyze --version | head -n 1)"

    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT

    # The unit as shipped, with only the ExecStart= binary swapped for one that exists.
    local binary
    binary="$(agentcron_binary "$work")"
    mkdir "$work/plain"
    sed -E "s|^ExecStart=[^ ]+|ExecStart=$binary|" "$unit" >"$work/plain/agentcron.service"
    grep -q "^ExecStart=$binary serve " "$work/plain/agentcron.service" ||
        fail "ExecStart= in $unit not in the expected form"
    run_silent systemd-analyze verify "$work/plain/agentcron.service"
    echo "verify: agentcron.service OK (ExecStart binary: $binary)"

    # The same unit with the command-launcher drop-in, loaded from its .d directory.
    mkdir -p "$work/dropin/agentcron.service.d"
    cp "$work/plain/agentcron.service" "$work/dropin/"
    cp "$dropin" "$work/dropin/agentcron.service.d/command-launcher.conf"
    run_silent systemd-analyze verify "$work/dropin/agentcron.service"
    echo "verify: agentcron.service + command-launcher.conf OK"

    # Assign before printing: a failure inside $(...) in an argument would go unnoticed.
    local figure
    figure="$(exposure_of "$unit")"
    echo "exposure: $figure (agentcron.service; threshold 1.5)"
    figure="$(exposure_of "$work/dropin/agentcron.service")"
    echo "exposure: $figure (agentcron.service + command-launcher.conf; threshold 1.5)"
}

main "$@"
