# Sourced by the test_*.sh wrappers: runs one python test with a trap that
# stops every server it started, whatever way it exits.
RC_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RC_PIDFILE=$(mktemp /tmp/rc-pids.XXXXXX)
export RC_PIDFILE
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree
rc_cleanup() {
	local pid
	while read -r pid; do
		kill -9 "$pid" 2>/dev/null || true
	done < "$RC_PIDFILE"
	rm -f "$RC_PIDFILE"
}
trap rc_cleanup EXIT
trap 'exit 130' INT TERM HUP
if [ ! -x "$RC_TESTS_DIR/../redis-ckpt" ]; then
	echo "examples/redis-ckpt/redis-ckpt is not built (run make)"
	exit 1
fi
rc_run() {
	local t=$1; shift
	python3 "$RC_TESTS_DIR/$t" "$@"
}
