# Sourced by build.sh and node/build.sh: the cache of built binaries.
#
# reuse_or_lock DIR NAME...: when DIR/bin holds every NAME, prints DIR/bin and
# ends the script. Otherwise it takes DIR's lock, so that one caller builds
# while the others (two test runs, a test and `make demo`) wait for it and
# then find the binaries built, and returns to the caller's build.

reuse_or_lock() {
    local out=$1 name
    shift
    _all_built() {
        for name in "$@"; do [[ -x "$out/bin/$name" ]] || return 1; done
    }
    if _all_built "$@"; then
        echo "$out/bin"
        exit 0
    fi
    mkdir -p "$(dirname "$out")"
    exec 9>"$out.lock"
    flock 9
    if _all_built "$@"; then
        echo "$out/bin"
        exit 0
    fi
}
