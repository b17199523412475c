#!/usr/bin/env bash
# Starts and stops a throwaway single-node OpenStack Swift with the S3 API (s3api + tempauth) on 127.0.0.1,
# for tests and local runs. Everything (config, rings, data, logs, pids) lives under DIR; no systemd, no syslog.
#
#   swift-s3.sh start DIR PORT   proxy (S3 endpoint) on 127.0.0.1:PORT; backends on free loopback ports
#   swift-s3.sh stop DIR         stops the servers started in DIR (DIR is left for the caller to remove)
#
# Credentials: access key "test:tester", secret "testing", region us-east-1, path-style addressing.
# Needs the Debian packages swift swift-proxy swift-object swift-container swift-account (python3-swift).
set -euo pipefail

readonly READY_TIMEOUT_S=${SWIFT_READY_TIMEOUT_S:-20}
readonly STOP_TIMEOUT_S=10
readonly LOG_TAIL_LINES=40
readonly SERVERS=(account container object proxy)
# Swift's Debian packages install into the system interpreter; a pyenv/venv python3 on PATH cannot import them.
readonly PY=${SWIFT_PYTHON:-/usr/bin/python3}

die() {
  echo "swift-s3.sh: $*" >&2
  exit 1
}

usage() {
  die "usage: swift-s3.sh start DIR PORT | stop DIR"
}

# Prints the last lines of every log in DIR, so a failed start or test explains itself.
log_tail() {
  local dir=$1 f
  for f in "$dir"/*.log; do
    [[ -e $f ]] || continue
    echo "----- $f (last $LOG_TAIL_LINES lines) -----" >&2
    tail -n "$LOG_TAIL_LINES" "$f" >&2 || true
  done
}

# N distinct free TCP ports on 127.0.0.1, space-separated (the kernel picks them; a race with another process
# binding one before Swift does is possible but rare, and then start-up fails with the log tail).
free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_in_use() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

write_server_conf() {
  local dir=$1 name=$2 port=$3 user=$4
  cat >"$dir/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
mount_check = false
devices = $dir/devices
swift_dir = $dir
user = $user
log_name = $name-server
log_level = INFO

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
EOF
}

write_proxy_conf() {
  local dir=$1 port=$2 user=$3
  cat >"$dir/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
swift_dir = $dir
user = $user
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# Fail fast instead of waiting on a dead backend.
conn_timeout = 2
node_timeout = 20

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
# Objects deleted in parallel per multi-delete (default 2): a 1000-key DeleteObjects is slow enough already.
multi_delete_concurrency = 8

# tempauth insists on a memcache client and the proxy caches account/container info there; with workers = 0 a
# dict inside the one proxy process does both (no memcached to run, nothing shared between instances).
[filter:cache]
paste.filter_factory = inproc_cache:filter_factory

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes

[filter:symlink]
use = egg:swift#symlink
EOF
}

# Runs a Swift WSGI server with swift.conf taken from DIR rather than /etc/swift, logging to stderr (-v).
write_launcher() {
  local dir=$1
  cat >"$dir/run-server.py" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])  # for inproc_cache
from swift.common import utils
utils.set_swift_dir(sys.argv[1])
from swift.common import storage_policy
storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[2], sys.argv[3], verbose=True))
EOF
  # The subset of swift.common.memcached.MemcacheRing the proxy pipeline calls, kept in a dict. Values are stored
  # as JSON like memcached does, so callers never share mutable objects; entries expire like memcache's.
  cat >"$dir/inproc_cache.py" <<'EOF'
import json, time

ENTRIES_MAX = 100000


class InProcessCache(object):
    def __init__(self):
        self._data = {}

    def _live(self, key):
        entry = self._data.get(key)
        if entry is not None and entry[1] and entry[1] < time.time():
            del self._data[key]
            return None
        return entry

    @staticmethod
    def _expiry(ttl):
        ttl = int(ttl or 0)
        if ttl <= 0:
            return 0
        return ttl if ttl > 30 * 24 * 3600 else time.time() + ttl

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        if len(self._data) >= ENTRIES_MAX:
            self._data.clear()
        self._data[key] = (json.dumps(value) if serialize else value, self._expiry(time), serialize)

    def get(self, key, raise_on_error=False):
        entry = self._live(key)
        if entry is None:
            return None
        return json.loads(entry[0]) if entry[2] else entry[0]

    def incr(self, key, delta=1, time=0):
        entry = self._live(key)
        value = max(0, int(json.loads(entry[0]) if entry else 0) + int(delta))
        self.set(key, value, time=time)
        return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -int(delta), time)

    def delete(self, key, server_key=None):
        self._data.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, serialize, time)

    def get_multi(self, keys, server_key):
        return [self.get(key) for key in keys]


def filter_factory(global_conf, **local_conf):
    cache = InProcessCache()

    def cache_filter(app):
        def middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return middleware
    return cache_filter
EOF
}

# One replica, one device per ring (what `swift-ring-builder X.builder create 8 1 1`, `add r1z1-127.0.0.1:PORT/d1 100`
# and `rebalance` do), built in one python process: the CLI costs ~1 s per call, nine calls dominated start-up.
build_rings() {
  "$PY" - "$@" <<'EOF'
import os, sys
from swift.common.ring import RingBuilder
d = sys.argv[1]
for name, port in zip(("account", "container", "object"), map(int, sys.argv[2:5])):
    b = RingBuilder(8, 1, 1)
    b.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": port, "replication_ip": "127.0.0.1",
               "replication_port": port, "device": "d1", "weight": 100, "meta": ""})
    b.rebalance()
    b.save(os.path.join(d, name + ".builder"))
    b.get_ring().save(os.path.join(d, name + ".ring.gz"))
EOF
}

pid_alive() {
  local pid_file=$1
  [[ -s $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# Waits in one python process (spawning one per poll would slow the start it waits for) until the healthcheck
# answers, every backend server (account, container, object) accepts connections on its port, and an S3 ListBuckets
# signed as test:tester succeeds, i.e. s3api, tempauth and the account server work. A ListBuckets alone is not enough:
# the container server may still be starting, and the first bucket PUT then gets a 503.
# Exit 0: ready; 1: timeout; 2: a server died (its name is printed).
wait_ready() {
  "$PY" - "$@" <<'EOF'
import datetime, hashlib, hmac, os, sys, time, urllib.request
import socket
dir_, port, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
backend_ports = [int(p) for p in sys.argv[4].split(",")]
names = sys.argv[5:]
url = "http://127.0.0.1:%s" % port
host = "127.0.0.1:%s" % port

def alive(name):
    try:
        with open(os.path.join(dir_, name + ".pid")) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False

def backends_listening():
    for p in backend_ports:
        try:
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
        except OSError:
            return False
    return True

def list_buckets_ok():
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "GET\n/\n\nhost:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n\n%s\n%s" % (
        host, payload, amz_date, signed, payload)
    scope = "%s/us-east-1/s3/aws4_request" % day
    to_sign = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    key = b"AWS4testing"
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(url + "/", headers={
        "Host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload,
        "Authorization": "AWS4-HMAC-SHA256 Credential=test:tester/%s, SignedHeaders=%s, Signature=%s" % (
            scope, signed, sig)})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status == 200 and b"ListAllMyBucketsResult" in r.read()

deadline = time.monotonic() + timeout_s
while time.monotonic() < deadline:
    for name in names:
        if not alive(name):
            print(name)
            sys.exit(2)
    try:
        with urllib.request.urlopen(url + "/healthcheck", timeout=2) as r:
            if r.status == 200 and backends_listening() and list_buckets_ok():
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

stop_servers() {
  local dir=$1 name pid_file pid waited
  for name in "${SERVERS[@]}"; do
    pid_file="$dir/$name.pid"
    if pid_alive "$pid_file"; then
      kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
    fi
  done
  for name in "${SERVERS[@]}"; do
    pid_file="$dir/$name.pid"
    waited=0
    while pid_alive "$pid_file" && ((waited < STOP_TIMEOUT_S * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if pid_alive "$pid_file"; then
      pid=$(cat "$pid_file")
      echo "swift-s3.sh: $name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
  done
}

cmd_start() {
  local dir=$1 port=$2
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "PORT must be a TCP port number, got '$port'"
  "$PY" -c 'import swift.common.middleware.s3api, swift.account.server, swift.container.server, swift.obj.server' \
    2>/dev/null || die "$PY cannot import Swift: install the Debian packages swift swift-proxy swift-object" \
    "swift-container swift-account (or point SWIFT_PYTHON at the python that has them)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for name in "${SERVERS[@]}"; do
    if pid_alive "$dir/$name.pid"; then
      die "a Swift $name server is already running from $dir (pid $(cat "$dir/$name.pid")); run: swift-s3.sh stop $dir"
    fi
  done
  if port_in_use "$port"; then
    die "127.0.0.1:$port is already in use; pick another PORT"
  fi

  mkdir -p "$dir/devices/d1"
  "$PY" - "$dir/devices/d1" <<'EOF' || die "$dir/devices/d1 does not support user xattrs (Swift needs them): use a DIR on ext4, xfs or tmpfs"
import os, sys
probe = os.path.join(sys.argv[1], ".xattr-probe")
open(probe, "w").close()
try:
    os.setxattr(probe, "user.mirrorfs", b"1")
finally:
    os.remove(probe)
EOF

  local account_port container_port object_port user
  read -r account_port container_port object_port <<<"$(free_ports 3)"
  user=$(id -un)

  cat >"$dir/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = mirrorfs-test-suffix
swift_hash_path_prefix = mirrorfs-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
EOF
  write_server_conf "$dir" account "$account_port" "$user"
  write_server_conf "$dir" container "$container_port" "$user"
  write_server_conf "$dir" object "$object_port" "$user"
  write_proxy_conf "$dir" "$port" "$user"
  write_launcher "$dir"
  rm -f "$dir"/*.builder "$dir"/*.ring.gz
  build_rings "$dir" "$account_port" "$container_port" "$object_port"

  local name
  for name in "${SERVERS[@]}"; do
    # Swift's run_wsgi calls setsid() itself, so the servers outlive this script and its caller's process group.
    "$PY" "$dir/run-server.py" "$dir" "$dir/$name-server.conf" "$name-server" \
      </dev/null >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
  done

  local rc=0 dead
  dead=$(wait_ready "$dir" "$port" "$READY_TIMEOUT_S" "$account_port,$container_port,$object_port" "${SERVERS[@]}") || rc=$?
  if ((rc == 0)); then
    echo "Swift S3 ready: endpoint http://127.0.0.1:$port region us-east-1 access key test:tester secret testing (dir $dir)"
    return 0
  fi
  log_tail "$dir"
  stop_servers "$dir"
  if ((rc == 2)); then
    die "Swift $dead server exited during start-up (logs above, in $dir/$dead.log)"
  fi
  die "Swift S3 on 127.0.0.1:$port not ready within ${READY_TIMEOUT_S}s (logs above, in $dir/*.log)"
}

cmd_stop() {
  local dir=$1
  [[ -d $dir ]] || die "no such directory: $dir"
  stop_servers "$dir"
}

case ${1:-} in
  start)
    (($# == 3)) || usage
    cmd_start "$2" "$3"
    ;;
  stop)
    (($# == 2)) || usage
    cmd_stop "$2"
    ;;
  *) usage ;;
esac
