# Sourced by the bench scripts.

# Removes the containers and default network of each compose project named.
remove_projects() {
    local p ids
    for p in "$@"; do
        ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
        # shellcheck disable=SC2086
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
        docker network rm "${p}_default" >/dev/null 2>&1 || true
    done
}
