# Shared by tools/ensure-registry, ensure-crane and ensure-cosign (sourced, not run): build one Go
# command with `go install PKG@VERSION` into ${PROMOTE_CACHE:-$HOME/.cache/promote}/NAME/VERSION/
# once, under a flock so parallel test workers and shells wait and reuse it, and print that
# directory as the only line on stdout. Build output and timing go to stderr.
# `go install pkg@version` builds with the module's own go.mod/go.sum (checked against the
# checksum database), so no go.mod of ours pins these; the version is the pin.
ensure_go_tool() {
    local name="$1" pkg="$2" version="$3" binary="$4"
    local root="${PROMOTE_CACHE:-$HOME/.cache/promote}/$name"
    local dest="$root/$version"
    if [[ -x "$dest/$binary" ]]; then
        printf '%s\n' "$dest"
        return 0
    fi
    command -v go >/dev/null 2>&1 || {
        echo "ensure-$name: 'go' is not on PATH; install Go >= 1.24 to build $pkg" >&2
        return 1
    }
    mkdir -p "$root"
    exec 9>"$root/.lock"
    flock 9
    if [[ -x "$dest/$binary" ]]; then
        printf '%s\n' "$dest"
        return 0
    fi
    local tmp
    tmp="$(mktemp -d "$root/.build-$version.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    echo "ensure-$name: building $pkg@$version into $dest" >&2
    local start=$SECONDS
    GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
        go install -trimpath -ldflags "-s -w" "$pkg@$version" >&2
    echo "ensure-$name: built in $((SECONDS - start)) s" >&2
    chmod 0755 "$tmp"
    rm -rf "$dest"
    mv -T "$tmp" "$dest"
    trap - EXIT
    printf '%s\n' "$dest"
}
