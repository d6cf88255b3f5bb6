#!/bin/bash
# The example's "app": it asks its elect sidecar whether this host leads
# (GET /readyz on 127.0.0.1:4040: the sidecar shares the app's network
# namespace; 200 only while leading) once a second, prints each change and
# keeps the answer in /tmp/role. A real service would do its leader-only
# work while the answer is 200, or long-poll the status instead of polling:
#   GET /v1/status?wait=30s&index=N  (see README.md, "The socket").
trap 'exit 0' TERM INT
role=
while :; do
    now=follower
    # bash's /dev/tcp: the image needs no HTTP client.
    if exec 3<>/dev/tcp/127.0.0.1/4040; then
        printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
        read -r _ code _ <&3 && [ "$code" = 200 ] && now=leader
        exec 3<&-
    else
        now=unknown     # the sidecar is not (yet) running
    fi 2>/dev/null
    if [ "$now" != "$role" ]; then
        role=$now
        echo "$(hostname): $role"
        echo "$role" > /tmp/role.new && mv /tmp/role.new /tmp/role
    fi
    sleep 1 & wait $!
done
