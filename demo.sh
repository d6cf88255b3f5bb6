#!/bin/sh
# The main job on the embedded file backend: three `elect` candidates for one
# election; one leads and runs its command; the leader is stopped (SIGTERM),
# another takes over; that one's agent is killed (kill -9), the third takes
# over; the timeline shows who led when, with fencing tokens.
#   ./demo.sh              install missing packages (as root), build, run the demo
#   ./demo.sh --no-build   run the demo with the binaries already built
set -eu
cd "$(dirname "$0")"
if [ "${1:-}" != "--no-build" ]; then
	./deps.sh
	make -s
fi

D=$(mktemp -d /tmp/elect-demo.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

# The leader command: says when it starts and stops, with its token.
cat > "$D/leader.sh" <<'CMD'
#!/bin/sh
now() { date +%H:%M:%S.%3N; }
echo "$(now) $ELECT_ID starts leading, token $ELECT_TOKEN" >> "$TIMELINE"
trap 'echo "$(now) $ELECT_ID stops leading" >> "$TIMELINE"; exit 0' TERM INT
while :; do sleep 0.1; done
CMD
chmod +x "$D/leader.sh"
export TIMELINE="$D/timeline"

for id in alpha beta gamma; do
	bin/elect --name demo --id "$id" --backend "file://$D/demo.lock" --ttl 3s --renew 1s \
		--kill-grace 1s --socket "$D/$id.sock" -- "$D/leader.sh" > "$D/$id.log" 2>&1 &
	PIDS="$PIDS $!"
	eval "pid_$id=$!"
done

leader() {   # prints the id of the agent whose status says it leads
	for id in alpha beta gamma; do
		[ -S "$D/$id.sock" ] || continue
		if bin/elect status --socket "$D/$id.sock" 2>/dev/null | grep -q '"is_leader": *true'; then
			echo "$id"; return 0
		fi
	done
	return 1
}
wait_leader() {   # wait_leader [EXCEPT]: a leader other than EXCEPT
	i=0
	while [ $i -lt 100 ]; do
		l=$(leader || true)
		if [ -n "$l" ] && [ "$l" != "${1:-}" ]; then echo "$l"; return 0; fi
		sleep 0.1; i=$((i + 1))
	done
	echo "no leader after 10 s" >&2; return 1
}

first=$(wait_leader)
echo "== three candidates started; $first leads. Its status:"
bin/elect status --socket "$D/$first.sock"
sleep 1
echo "== SIGTERM to $first's agent (clean handover)"
eval "kill -TERM \$pid_$first"
second=$(wait_leader "$first")
echo "   $second leads now"
sleep 1
echo "== kill -9 of $second's agent (crash failover)"
eval "kill -KILL \$pid_$second"
third=$(wait_leader "$second")
echo "   $third leads now"
sleep 1
eval "kill -TERM \$pid_$third"
sleep 0.5
echo "== timeline (each leader command's own log; tokens strictly increase):"
cat "$TIMELINE"
echo "   ($second has no stop line: when its agent was killed with kill -9, the guard between them SIGKILLed the command and all it had started)"
echo "== agent logs: $D/*.log are removed on exit; a sample from $first:"
grep transition "$D/$first.log" | head -5
