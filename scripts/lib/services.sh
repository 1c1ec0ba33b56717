# Shell functions that install what Rill's tests, benchmarks and examples
# start servers from: Debian packages and a Python venv. Each is
# idempotent. Source this file; it defines functions and runs nothing.

say() { printf '[%s] %s\n' "${RILL_SCRIPT:-rill}" "$*" >&2; }

# Installs the Debian packages named, those whose command is missing
# (pairs of COMMAND:PACKAGE), when this is root on a machine with apt-get.
need_debs() {
  local missing=() pair
  for pair in "$@"; do
    local cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing ${missing[*]} and cannot install them (need root and apt-get)"
  fi
}

# The Python venv with the official RocketMQ 5 client (interop tests) and
# osmem-server (an OpenSearch-compatible server for the search sink);
# exports RILL_PYTHON and RILL_OSMEM.
python_venv() {
  local venv="${RILL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rill/venv-py}"
  local client="rocketmq-python-client==5.1.2" search="osmem-server==0.1.6"
  if ! "$venv/bin/python" -c "import rocketmq, osmem_server" >/dev/null 2>&1; then
    command -v python3 >/dev/null || { say "python3 is needed (interop and search tests)"; return 1; }
    say "setting up $venv with $client and $search"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$client" "$search"
  fi
  export RILL_PYTHON="$venv/bin/python"
  RILL_OSMEM="$("$venv/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')"
  export RILL_OSMEM
}

# An MQTT broker on 127.0.0.1:1883 (the machine's Mosquitto, or one
# started here with a config and store under the cache dir).
mosquitto_up() {
  mqtt_open() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
  mqtt_open && return 0
  need_debs mosquitto:mosquitto mosquitto_pub:mosquitto-clients
  local mosquitto; mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  [ -x "$mosquitto" ] || { say "mosquitto is not installed; the MQTT tests will say so"; return 1; }
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/rill/mosquitto"
  mkdir -p "$dir"
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nlog_dest file %s/mosquitto.log\n' \
    "$dir" "$dir" >"$dir/mosquitto.conf"
  say "starting mosquitto on 127.0.0.1:1883"
  "$mosquitto" -d -c "$dir/mosquitto.conf"
  for _ in $(seq 1 50); do mqtt_open && return 0; sleep 0.1; done
  say "mosquitto did not start; see $dir/mosquitto.log"
  return 1
}
