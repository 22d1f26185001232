#!/usr/bin/env bash
# Runs every test of the project, installing what the tests need first:
#   - Debian's kcat (when root and missing),
#   - Debian's Go and Sarama for tests/go (when root and missing),
#   - Debian's Prometheus (when root and missing),
#   - a Python venv in .venv with the pinned client libraries,
#   - node modules (kafkajs) in tests/js,
#   - a JDK and Maven (Debian, when root and missing), the Java client jars
#     (kafka-clients, from tests/java/pom.xml) in tests/java/lib and the Java
#     test programs compiled into tests/java/classes.
# Then: the release build of the broker, the Rust tests, and the client tests
# against the real binary. Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

if ! command -v kcat >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        step "installing kcat (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
    else
        echo "kcat is missing and this is not root: install it (apt-get install kcat)" >&2
        exit 1
    fi
fi

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/Shopify/sarama ]; then
    if [ "$(id -u)" = 0 ]; then
        step "installing Go and Sarama (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-shopify-sarama-dev >/dev/null
    else
        echo "Go/Sarama are missing and this is not root: the Sarama tests will be skipped" >&2
        echo "(apt-get install golang-go golang-github-shopify-sarama-dev)" >&2
    fi
fi

if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        step "installing Prometheus (Debian), which scrapes /metrics in tests/clients/test_metrics.py"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "prometheus is missing and this is not root: the Prometheus test will fail" >&2
        echo "(apt-get install prometheus)" >&2
    fi
fi

REQ=tests/clients/requirements.txt
STAMP=.venv/.requirements.sha
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    step "creating the Python venv (.venv) from $REQ"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r "$REQ"
    echo "$want" > "$STAMP"
fi

if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
    step "installing node modules (tests/js)"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
    touch tests/js/node_modules
fi

if ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        step "installing a JDK and Maven (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless maven >/dev/null
    else
        echo "javac/mvn are missing and this is not root: the Java client tests will be skipped" >&2
        echo "(apt-get install default-jdk-headless maven)" >&2
    fi
fi

# The jars are fetched into lib.tmp and compiled into classes.tmp, then
# renamed, so that an interrupted step is done again next time.
JAVA=tests/java
if command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    if [ ! -d $JAVA/lib ] || [ $JAVA/pom.xml -nt $JAVA/lib ]; then
        step "fetching the Java client jars ($JAVA/lib)"
        rm -rf $JAVA/lib $JAVA/lib.tmp
        (cd $JAVA && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib.tmp)
        mv $JAVA/lib.tmp $JAVA/lib
    fi
    if [ ! -d $JAVA/classes ] || [ -n "$(find $JAVA/src $JAVA/lib -newer $JAVA/classes -print -quit)" ]; then
        step "compiling the Java test programs ($JAVA/classes)"
        rm -rf $JAVA/classes $JAVA/classes.tmp
        javac -Xlint:all -encoding UTF-8 --release 17 -cp "$JAVA/lib/*" -d $JAVA/classes.tmp $JAVA/src/*.java
        mv $JAVA/classes.tmp $JAVA/classes
    fi
fi

step "building the broker (release)"
cargo build --release -j2 --bin sluice

step "Rust tests"
cargo test --release -j2 --workspace

# The image test of tests/clients/test_container.py builds and runs the image
# only with a docker or podman that works (SLUICE_CONTAINER_ENGINE picks one,
# or =none); the same detection here says which happened.
container_test() {
    local e path
    if [ "${SLUICE_CONTAINER_ENGINE:-}" = none ]; then
        echo "SKIPPED (SLUICE_CONTAINER_ENGINE=none)"
        return
    fi
    for e in ${SLUICE_CONTAINER_ENGINE:-docker podman}; do
        path=$(command -v "$e" 2>/dev/null) || continue
        if timeout 20 "$path" info >/dev/null 2>&1; then
            echo "RUN with $e (image build and run)"
            return
        fi
    done
    echo "SKIPPED: no working docker or podman here (the Dockerfile, deploy/ files and health check are still tested)"
}
CONTAINER_TEST=$(container_test)

step "client tests (pytest)"
echo "container image test: $CONTAINER_TEST"
export SLUICE_BIN="$ROOT/target/release/sluice"
set +e
.venv/bin/python -m pytest -p no:cacheprovider tests/clients "$@"
rc=$?
set -e
echo "container image test: $CONTAINER_TEST"
if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
