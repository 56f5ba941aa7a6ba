#!/usr/bin/env bash
# Tests for halo's agents, run directly (no halo, no Pacemaker):
#   agents/ocf/halo/httpd       OCF 1.1 resource agent
#   agents/fence/fence_sandbox  fence agent for halo sandbox nodes
# Usage: agents/tests/run.sh        (exits non-zero on any failure)
# Every process it starts is recorded by pid and killed at exit.

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
AGENTS=$(cd "$HERE/.." && pwd)
HTTPD="$AGENTS/ocf/halo/httpd"
FENCE="$AGENTS/fence/fence_sandbox"

T=$(mktemp -d /tmp/halo-agents-test.XXXXXX)
chmod 755 "$T"
PIDS="$T/pids" # every pid we start, one a line
: >"$PIDS"

pass=0
fail=0
failed=()

ok() {
	pass=$((pass + 1))
	printf '  ok    %s\n' "$1"
}
ko() {
	fail=$((fail + 1))
	failed+=("$1")
	printf '  FAIL  %s\n' "$1"
	[ $# -gt 1 ] && printf '        %s\n' "${@:2}"
	return 0
}
# expect RC NAME CMD...: run CMD, stdout+stderr in $OUT, check the exit code.
expect() {
	local want=$1 name=$2
	shift 2
	OUT=$("$@" 2>&1)
	local rc=$?
	if [ "$rc" = "$want" ]; then ok "$name (rc $rc)"; else ko "$name: rc $rc, want $want" "$(printf '%s' "$OUT" | tail -n 3)"; fi
}
check() { # check NAME CMD...: CMD must succeed
	local name=$1
	shift
	if "$@"; then ok "$name"; else ko "$name"; fi
}

alive() { # not a zombie
	kill -0 "$1" 2>/dev/null || return 1
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ "$st" != Z ]
}
dead() { ! alive "$1"; }
wait_dead() { # up to 5 s
	local i
	for i in $(seq 50); do dead "$1" && return 0; sleep 0.1; done
	return 1
}

cleanup() {
	local p
	# The httpd servers: stop through the agent, then by pid if anything is left.
	for f in "$T"/rsctmp*/httpd-*.pid; do
		[ -r "$f" ] && echo "$(cat "$f")" >>"$PIDS"
	done
	while read -r p; do
		case "$p" in '' | *[!0-9]*) continue ;; esac
		kill -KILL "$p" 2>/dev/null
	done <"$PIDS"
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

have() { command -v "$1" >/dev/null 2>&1; }

free_port() {
	python3 -c '
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])
s.close()' "$1"
}

xml_ok() { # stdin: XML
	if have xmllint; then xmllint --noout - 2>&1; else python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.stdin)'; fi
}

fetch() {
	if have curl; then
		curl -fsS -g --noproxy '*' --max-time 5 "$1"
	else
		python3 -c 'import sys, urllib.request; print(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=5).read().decode(), end="")' "$1"
	fi
}

# ============================================================== httpd

IP=127.0.0.100
echo "== httpd ($HTTPD)"
check "httpd is executable" test -x "$HTTPD"

export OCF_ROOT=/usr/lib/ocf
[ -d "$OCF_ROOT" ] || { mkdir -p "$T/ocf"; OCF_ROOT="$T/ocf"; }
export OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1
export OCF_RESOURCE_INSTANCE=halo-test-web
export OCF_RESKEY_CRM_meta_timeout=20000
export OCF_RESKEY_CRM_meta_on_node=testnode1
export OCF_RESKEY_ip=$IP

# Two passes: with resource-agents' ocf-shellfuncs (when installed) and without.
modes="standalone"
[ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] && modes="ocf-shellfuncs standalone"
for mode in $modes; do
	echo "-- httpd with $mode"
	if [ "$mode" = standalone ]; then
		export OCF_FUNCTIONS_DIR="$T/no-such-dir"
	else
		unset OCF_FUNCTIONS_DIR
	fi
	export HA_RSCTMP="$T/rsctmp-$mode/sub" # does not exist yet: the agent creates it
	PORT=$(free_port $IP)
	export OCF_RESKEY_port=$PORT
	URL="http://$IP:$PORT/"

	expect 0 "meta-data" "$HTTPD" meta-data
	md=$OUT
	if printf '%s\n' "$md" | xml_ok >/dev/null; then ok "meta-data is well-formed XML"; else ko "meta-data is well-formed XML"; fi
	if have xmllint && [ -r /usr/share/resource-agents/ra-api-1.dtd ]; then
		if (cd /usr/share/resource-agents && printf '%s\n' "$md" | xmllint --noout --valid - 2>&1); then ok "meta-data valid against ra-api-1.dtd"; else ko "meta-data valid against ra-api-1.dtd"; fi
	fi
	if have xmllint && [ -r /usr/share/resource-agents/metadata.rng ]; then
		if printf '%s\n' "$md" | xmllint --noout --relaxng /usr/share/resource-agents/metadata.rng - >/dev/null 2>&1; then ok "meta-data valid against metadata.rng"; else ko "meta-data valid against metadata.rng"; fi
	fi
	check "meta-data: OCF 1.1, ip/port/node_name, monitor 10s" \
		sh -c 'printf "%s" "$1" | grep -q "<version>1.1</version>" &&
		       printf "%s" "$1" | grep -q "parameter name=\"ip\"" &&
		       printf "%s" "$1" | grep -q "parameter name=\"port\"" &&
		       printf "%s" "$1" | grep -q "parameter name=\"node_name\"" &&
		       printf "%s" "$1" | grep -q "action name=\"monitor\".*interval=\"10s\""' sh "$md"
	check "meta-data works with no OCF_RESKEY_*" \
		env -u OCF_RESKEY_ip -u OCF_RESKEY_port -u OCF_RESOURCE_INSTANCE "$HTTPD" meta-data >/dev/null

	expect 0 "validate-all" "$HTTPD" validate-all
	expect 7 "monitor (stopped)" "$HTTPD" monitor
	# start must not hold the caller's pipes (trap 3): run it inside a pipeline.
	t0=$(date +%s)
	OUT=$(timeout 30 "$HTTPD" start 2>&1 | cat)
	rc=${PIPESTATUS[0]}
	t1=$(date +%s)
	if [ "$rc" = 0 ]; then ok "start (rc 0)"; else ko "start: rc $rc" "$OUT"; fi
	if [ $((t1 - t0)) -lt 10 ]; then ok "start returns at once through a pipe"; else ko "start held the pipe $((t1 - t0))s"; fi
	pidf="$HA_RSCTMP/httpd-$OCF_RESOURCE_INSTANCE.pid"
	check "pid file in HA_RSCTMP" test -s "$pidf"
	spid=$(cat "$pidf" 2>/dev/null)
	echo "$spid" >>"$PIDS"
	check "server is detached (own session, stdio not the caller's)" sh -c '
		sid=$(sed "s/.*) //" /proc/$1/stat | cut -d" " -f4)
		[ "$sid" = "$1" ] || exit 1
		for fd in /proc/$1/fd/*; do
			case $(readlink "$fd") in pipe:*) exit 1 ;; esac
		done' sh "$spid"
	expect 0 "start again (idempotent)" "$HTTPD" start
	check "still the same server" test "$(cat "$pidf" 2>/dev/null)" = "$spid"
	expect 0 "monitor (running)" "$HTTPD" monitor
	body=$(fetch "$URL" 2>&1)
	if [ "$body" = "halo httpd: served by testnode1" ]; then ok "page says: $body"; else ko "page: '$body'"; fi
	expect 1 "monitor with another expected node -> 1" env OCF_RESKEY_CRM_meta_on_node=othernode "$HTTPD" monitor
	check "monitor 1 gives an exit reason" sh -c 'printf "%s" "$1" | grep -q "^ocf-exit-reason:"' sh "$OUT"
	expect 0 "stop" "$HTTPD" stop
	check "server process gone" dead "$spid"
	check "pid file removed" test ! -e "$pidf"
	expect 0 "stop again (idempotent)" "$HTTPD" stop
	expect 7 "monitor after stop" "$HTTPD" monitor

	# node name fallbacks
	expect 0 "start with node_name (no CRM_meta_on_node)" env -u OCF_RESKEY_CRM_meta_on_node OCF_RESKEY_node_name=nameparam "$HTTPD" start
	echo "$(cat "$pidf" 2>/dev/null)" >>"$PIDS"
	body=$(fetch "$URL" 2>&1)
	if [ "$body" = "halo httpd: served by nameparam" ]; then ok "page uses node_name"; else ko "page: '$body'"; fi
	expect 0 "stop" "$HTTPD" stop
	expect 0 "start with uname -n" env -u OCF_RESKEY_CRM_meta_on_node "$HTTPD" start
	echo "$(cat "$pidf" 2>/dev/null)" >>"$PIDS"
	body=$(fetch "$URL" 2>&1)
	if [ "$body" = "halo httpd: served by $(uname -n)" ]; then ok "page uses uname -n"; else ko "page: '$body'"; fi
	expect 0 "stop" "$HTTPD" stop

	# bad parameters
	expect 6 "validate-all port=0" env OCF_RESKEY_port=0 "$HTTPD" validate-all
	check "bad port gives an exit reason" sh -c 'printf "%s" "$1" | grep -q "^ocf-exit-reason:.*port"' sh "$OUT"
	expect 6 "validate-all port=65536" env OCF_RESKEY_port=65536 "$HTTPD" validate-all
	expect 6 "validate-all port=http" env OCF_RESKEY_port=http "$HTTPD" validate-all
	expect 6 "start port=99999" env OCF_RESKEY_port=99999 "$HTTPD" start
	expect 6 "validate-all ip=1.2.3" env OCF_RESKEY_ip=1.2.3 "$HTTPD" validate-all
	expect 6 "validate-all ip=256.1.1.1" env OCF_RESKEY_ip=256.1.1.1 "$HTTPD" validate-all
	expect 6 "validate-all ip=::zz" env OCF_RESKEY_ip=::zz "$HTTPD" validate-all
	expect 0 "validate-all ip=::1" env OCF_RESKEY_ip=::1 "$HTTPD" validate-all
	expect 6 "validate-all ip='\$(touch ...)'" env "OCF_RESKEY_ip=\$(touch $T/pwned)" "$HTTPD" validate-all
	expect 6 "start ip='127.0.0.1;touch ...'" env "OCF_RESKEY_ip=127.0.0.1;touch $T/pwned" "$HTTPD" start
	check "parameter values are never evaluated" test ! -e "$T/pwned"
	expect 3 "unknown action" "$HTTPD" frobnicate
	expect 3 "reload-agent not implemented" "$HTTPD" reload-agent
	expect 0 "usage" "$HTTPD" usage

	# port taken by another process
	python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
time.sleep(600)' "$IP" "$PORT" </dev/null >/dev/null 2>&1 &
	blocker=$!
	echo "$blocker" >>"$PIDS"
	for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q "$IP:$PORT " && break; sleep 0.1; done
	expect 1 "start on a port taken by another process" "$HTTPD" start
	check "exit reason names the taken port" sh -c 'printf "%s\n" "$1" | grep "^ocf-exit-reason:" | tail -n 1 | grep -q "in use"' sh "$OUT"
	echo "        $(printf '%s\n' "$OUT" | grep '^ocf-exit-reason:' | tail -n 1)"
	expect 7 "monitor with a foreign listener -> 7" "$HTTPD" monitor
	expect 0 "stop with a foreign listener" "$HTTPD" stop
	check "foreign listener untouched" alive "$blocker"
	kill -KILL "$blocker" 2>/dev/null
	wait "$blocker" 2>/dev/null
done
unset OCF_FUNCTIONS_DIR

if [ -x /usr/sbin/ocf-tester ]; then
	echo "-- /usr/sbin/ocf-tester"
	export HA_RSCTMP="$T/rsctmp-tester"
	PORT=$(free_port $IP)
	otout=$(timeout 300 /usr/sbin/ocf-tester -n halo-test-ocftester -o ip=$IP -o port="$PORT" "$HTTPD" 2>&1)
	otrc=$?
	printf '%s\n' "$otout" | sed 's/^/        /'
	for f in "$HA_RSCTMP"/httpd-*.pid; do [ -r "$f" ] && cat "$f" >>"$PIDS"; done
	if [ $otrc = 0 ]; then ok "ocf-tester passed"; else ko "ocf-tester: rc $otrc"; fi
else
	echo "-- /usr/sbin/ocf-tester not installed: skipped"
fi

# ============================================================== fence_sandbox

echo "== fence_sandbox ($FENCE)"
check "fence_sandbox is executable" test -x "$FENCE"
unset HALO_SANDBOX HALO_BIN
SB="$T/sandbox"

# A fake node: `setsid` leader writing its pid to halod.pid, plus a child in its group.
fake_node() { # fake_node NODE
	local n=$1 i
	mkdir -p "$SB/$n"
	: >"$SB/$n/corosync.conf"
	setsid sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; sleep 1000 & echo $! >"$2"; exec sleep 1000' \
		sh "$SB/$n/halod.pid" "$T/$n.child" </dev/null >/dev/null 2>&1 &
	echo $! >>"$PIDS"
	disown $! # no "Killed" job notice when fence_sandbox kills it
	for i in $(seq 50); do [ -s "$SB/$n/halod.pid" ] && [ -s "$T/$n.child" ] && break; sleep 0.1; done
	cat "$SB/$n/halod.pid" >>"$PIDS"
	cat "$T/$n.child" >>"$PIDS"
}
fake_node node1
fake_node node2
fake_node node10
mkdir -p "$SB/node3" && : >"$SB/node3/corosync.conf" # a node that is off
# node4: halod.pid names a live process that does NOT lead its group (a reused pid).
mkdir -p "$SB/node4" && : >"$SB/node4/corosync.conf"
sleep 1000 </dev/null >/dev/null 2>&1 &
decoy=$!
echo "$decoy" >>"$PIDS"
echo "$decoy" >"$SB/node4/halod.pid"
mkdir -p "$SB/notanode" # no corosync.conf, no halod.pid: not listed

L1=$(cat "$SB/node1/halod.pid")
C1=$(cat "$T/node1.child")
L2=$(cat "$SB/node2/halod.pid")
C2=$(cat "$T/node2.child")
check "fake node1 leads its group and has a child in it" sh -c '
	[ "$(sed "s/.*) //" /proc/$1/stat | cut -d" " -f3)" = "$1" ] &&
	[ "$(sed "s/.*) //" /proc/$2/stat | cut -d" " -f3)" = "$1" ]' sh "$L1" "$C1"

fence_in() { printf '%b' "$1" | "$FENCE"; } # stdin form

expect 0 "metadata (stdin)" fence_in "action=metadata\n"
md=$OUT
if printf '%s\n' "$md" | xml_ok >/dev/null; then ok "metadata is well-formed XML"; else ko "metadata is well-formed XML"; fi
check "metadata: resource-agent name, plug getopt, content, actions" sh -c '
	printf "%s" "$1" | grep -q "<resource-agent name=\"fence_sandbox\" shortdesc=" &&
	printf "%s" "$1" | grep -q "<getopt mixed=\"[^\"]*--plug=\[id\]\"" &&
	printf "%s" "$1" | grep -q "<content type=\"string\"" &&
	for a in on off reboot status monitor list metadata validate-all; do
		printf "%s" "$1" | grep -q "<action name=\"$a\"" || exit 1
	done' sh "$md"
expect 0 "metadata (argv -o metadata)" "$FENCE" -o metadata
check "argv and stdin metadata are identical" test "$OUT" = "$md"

expect 0 "monitor" fence_in "action=monitor\nsandbox=$SB\n"
expect 1 "monitor, missing sandbox dir" fence_in "action=monitor\nsandbox=$T/nope\n"
expect 1 "monitor, no sandbox at all" fence_in "action=monitor\n"
expect 0 "monitor via HALO_SANDBOX" env HALO_SANDBOX="$SB" "$FENCE" --action=monitor
expect 0 "validate-all" fence_in "action=validate-all\nsandbox=$SB\nplug=node1\n"

expect 0 "list (HALO_SANDBOX)" env HALO_SANDBOX="$SB" "$FENCE" --action=list
want=$(printf 'node1,\nnode2,\nnode3,\nnode4,\nnode10,')
if [ "$OUT" = "$want" ]; then ok "list shows every node as plug,alias"; else ko "list output" "$OUT"; fi
expect 0 "list-status" fence_in "action=list-status\nsandbox=$SB\n"
check "list-status: node1 on, node3 off" sh -c 'printf "%s\n" "$1" | grep -qx "node1,,on" && printf "%s\n" "$1" | grep -qx "node3,,off"' sh "$OUT"

expect 0 "status node1 (stdin, with comments, blanks, unknown key)" \
	fence_in "# a comment\n\naction=status\nsandbox=$SB\nplug=node1\nfoo=bar\n"
check "unknown key warned about on stderr" sh -c 'printf "%s" "$1" | grep -qi "unknown option.*foo"' sh "$OUT"
expect 0 "status node2 (argv --action=status --plug=node2)" "$FENCE" --action=status --plug=node2 --sandbox="$SB"
expect 0 "status node2 (argv --plug node2 -o status)" "$FENCE" --plug node2 -o status --sandbox "$SB"
expect 0 "status via port= (deprecated alias)" fence_in "action=status\nsandbox=$SB\nport=node1\n"
expect 0 "status via nodename=" fence_in "action=status\nsandbox=$SB\nnodename=node1\n"
expect 2 "status node3 (no halod.pid) -> off" fence_in "action=status\nsandbox=$SB\nplug=node3\n"
expect 2 "status node4 (pid not a group leader) -> off" fence_in "action=status\nsandbox=$SB\nplug=node4\n"
expect 1 "status of a node that does not exist" fence_in "action=status\nsandbox=$SB\nplug=node99\n"
expect 1 "unknown action" fence_in "action=explode\nsandbox=$SB\nplug=node1\n"

for bad in '../node1' 'node1/..' '..' 'node1;kill' '$(id)' 'node 1' '-node1' 'nöde'; do
	expect 1 "plug '$bad' refused" fence_in "action=off\nsandbox=$SB\nplug=$bad\n"
done
expect 1 "argv plug '../node1' refused" "$FENCE" --action=off --plug=../node1 --sandbox="$SB"
check "refused plugs killed nothing" sh -c 'for p; do kill -0 "$p" || exit 1; done' sh "$L1" "$C1" "$L2" "$C2"

expect 0 "off node1 (stdin)" fence_in "action=off\nsandbox=$SB\nplug=node1\n"
check "node1 leader gone" wait_dead "$L1"
check "node1 child gone" wait_dead "$C1"
check "node2 untouched" sh -c 'kill -0 "$1" && kill -0 "$2"' sh "$L2" "$C2"
expect 2 "status node1 after off" fence_in "action=status\nsandbox=$SB\nplug=node1\n"
expect 0 "off node1 again (already off)" fence_in "action=off\nsandbox=$SB\nplug=node1\n"

expect 0 "off node2 (argv)" "$FENCE" --action=off --plug=node2 --sandbox="$SB"
check "node2 leader gone" wait_dead "$L2"
check "node2 child gone" wait_dead "$C2"
expect 2 "status node2 (argv) after off" "$FENCE" --action=status --plug=node2 --sandbox="$SB"

expect 0 "off node4 (pid is not a group leader: nothing to kill)" fence_in "action=off\nsandbox=$SB\nplug=node4\n"
check "decoy process not killed" alive "$decoy"

# on: no halo available
if ! PATH=/usr/bin:/bin command -v halo >/dev/null 2>&1; then
	expect 1 "on without halo fails" env PATH=/usr/bin:/bin "$(command -v python3)" "$FENCE" --action=on --plug=node1 --sandbox="$SB"
	check "on without halo says why" sh -c 'printf "%s" "$1" | grep -qi "halo not found"' sh "$OUT"
fi
expect 1 "on with a missing halo_bin fails" fence_in "action=on\nsandbox=$SB\nplug=node1\nhalo_bin=$T/no-halo\n"

# on / reboot through a fake `halo sandbox start DIR NODE`
cat >"$T/fakehalo" <<'EOF'
#!/bin/sh
# fake `halo sandbox start DIR NODE`
[ "$1 $2" = "sandbox start" ] || exit 2
setsid sh -c 'echo $$ >"$1"; exec sleep 1000' sh "$3/$4/halod.pid" </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s "$3/$4/halod.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
cat "$3/$4/halod.pid" >>"$FAKEHALO_PIDS"
echo "$4: started (pid $(cat "$3/$4/halod.pid"))"
EOF
chmod +x "$T/fakehalo"
export FAKEHALO_PIDS="$PIDS"
expect 0 "on node1 (halo_bin=fake halo)" fence_in "action=on\nsandbox=$SB\nplug=node1\nhalo_bin=$T/fakehalo\n"
expect 0 "status node1 after on" fence_in "action=status\nsandbox=$SB\nplug=node1\n"
N1=$(cat "$SB/node1/halod.pid")
expect 0 "reboot node1 (HALO_BIN)" env HALO_BIN="$T/fakehalo" HALO_SANDBOX="$SB" "$FENCE" --action=reboot --plug=node1
check "reboot killed the old node1" wait_dead "$N1"
N1b=$(cat "$SB/node1/halod.pid" 2>/dev/null)
check "reboot started a new node1" sh -c '[ -n "$1" ] && [ "$1" != "$2" ] && kill -0 "$1"' sh "$N1b" "$N1"
expect 0 "reboot node10 with no halo: off counts, on warned" fence_in "action=reboot\nsandbox=$SB\nplug=node10\nhalo_bin=$T/no-halo\n"
check "node10 child gone" wait_dead "$(cat "$T/node10.child")"
expect 2 "status node10 after reboot without halo" fence_in "action=status\nsandbox=$SB\nplug=node10\n"

# ============================================================== summary
echo
echo "== summary: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
	printf '   failed: %s\n' "${failed[@]}"
	exit 1
fi
exit 0
