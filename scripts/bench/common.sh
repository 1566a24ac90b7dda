# Helpers the bench-*.sh scripts source: free loopback ports, waiting for a listener, and
# a PostgreSQL of the run's own (initdb on a free port, as the postgres user when root).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 60 s until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nothing listens on $1" >&2; return 1
}

# start_pg DIR LOG [postgres options...]: initdb in DIR/pg and start postgres on a free
# port; sets PG_PORT, PG_PID and PGBIN (its binaries). Stop it with `kill -INT "$PG_PID"`.
start_pg() {
  local dir=$1 log=$2; shift 2
  local as_pg=()
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_PORT=$(free_port)
  if [ "$(id -u)" = 0 ]; then as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups); fi
  mkdir -p "$dir/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir/pg"; fi
  "${as_pg[@]}" "$PGBIN/initdb" -D "$dir/pg" -U signal -A trust >/dev/null
  "${as_pg[@]}" "$PGBIN/postgres" -D "$dir/pg" -p "$PG_PORT" -k "$dir/pg" \
    -c listen_addresses=127.0.0.1 "$@" >"$log" 2>&1 &
  PG_PID=$!
  wait_port "$PG_PORT"
}
