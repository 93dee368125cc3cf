#!/usr/bin/env bash
# Starts (or stops) a throwaway Ceph cluster on 127.0.0.1 for the S3 tests: one monitor, one
# memstore OSD and one RGW (the S3 gateway), all under $CEPH_DIR, no authentication, nothing
# written outside that directory. Needs ceph-mon ceph-osd radosgw ceph-common (Debian).
#
#   .ci/ceph-rgw.sh start   prints KFP_EDGE_TEST_S3_* assignments for the tests (eval them)
#   .ci/ceph-rgw.sh stop    stops the daemons it started (by their pid files) and deletes $CEPH_DIR
set -euo pipefail
CEPH_DIR=${CEPH_DIR:-/tmp/kfp-edge-ceph}
MON_PORT=${CEPH_MON_PORT:-16789}
RGW_PORT=${CEPH_RGW_PORT:-17480}
ACCESS_KEY=kfp-edge-rgw-test
SECRET_KEY=kfp-edge-rgw-test-secret
CONF=$CEPH_DIR/ceph.conf

stop() {
    for pidfile in "$CEPH_DIR"/run/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$CEPH_DIR"
}

start() {
    stop
    mkdir -p "$CEPH_DIR"/{mon,osd,run,log}
    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_PORT]
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc
client mount timeout = 30
osd objectstore = memstore
memstore device bytes = 1073741824
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon data = $CEPH_DIR/mon/\$cluster-\$id
osd data = $CEPH_DIR/osd/\$cluster-\$id
run dir = $CEPH_DIR/run
pid file = $CEPH_DIR/run/\$name.pid
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/log/\$name.log
keyring = /dev/null
[client.rgw.local]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $CEPH_DIR/rgw
rgw dns name = 127.0.0.1
CONF
    monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$CEPH_DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" -i a
    osd_id=$(ceph -c "$CONF" osd create)
    mkdir -p "$CEPH_DIR/osd/ceph-$osd_id"
    ceph-osd -c "$CONF" -i "$osd_id" --mkfs >"$CEPH_DIR/log/osd-mkfs.log" 2>&1
    ceph-osd -c "$CONF" -i "$osd_id" 2>>"$CEPH_DIR/log/osd-start.log"
    mkdir -p "$CEPH_DIR/rgw"
    radosgw -c "$CONF" -n client.rgw.local
    radosgw-admin -c "$CONF" user create --uid kfp-edge-test --display-name kfp-edge-test \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >/dev/null
    for _ in $(seq 300); do
        if curl -fs -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then
            echo "export KFP_EDGE_TEST_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
            echo "export KFP_EDGE_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
            echo "export KFP_EDGE_TEST_S3_SECRET_KEY=$SECRET_KEY"
            echo "export KFP_EDGE_TEST_S3_REGION=us-east-1"
            return 0
        fi
        sleep 0.2
    done
    echo "radosgw did not answer on 127.0.0.1:$RGW_PORT; logs in $CEPH_DIR/log" >&2
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
