#!/usr/bin/env bash
# e2e 用の本物の単一ノード Kubernetes クラスタ（ホストプロセスとして動かす）。
#
#   cluster.sh up          ビルド（初回のみ、版ごとにキャッシュ）して全コンポーネントを起動し、
#                          ノードが Ready でメトリクスが取れるまで待つ。動いているものは再利用する。
#   cluster.sh kubeconfig  管理者用 kubeconfig のパスを出す。
#   cluster.sh status      コンポーネントごとに 1 行（running/stopped, pid, アドレス）。
#                          すべて動いていれば 0、止まっているものがあれば 3 で終わる。
#   cluster.sh kubectl ... このクラスタの版の kubectl を管理者 kubeconfig で実行する。
#   cluster.sh down        起動したものをすべて止め、マウント・iptables・ブリッジ・cgroup・sysctl を戻す。
#
# 材料はすべて公開のソースから: Kubernetes・etcd・metrics-server は Go モジュールプロキシから
# ビルドし（modules/ のラッパーモジュール。k8s.io/kubernetes の staging モジュールは replace で
# 同じ版の v0.x に向ける）、containerd・runc・CNI プラグイン・docker-registry は Debian の
# パッケージを使う。pause イメージは k8s.io/kubernetes モジュール内の pause.c から作る。
# コンテナレジストリからは何も pull しない。
#
# 必要なもの: root、Go（modules/*/go.mod の go 行以上）、apt（足りないパッケージを入れる）。
# 端末へのメッセージは英語、コメントは日本語（プロジェクトの決まり）。
#
# 待ち受け（ワイルドカードは使わない）:
#   127.0.0.1: apiserver 6443, etcd 2379/2380, registry 5000, controller-manager 10257,
#              scheduler 10259, kubelet healthz 10248, kube-proxy healthz 10256 / metrics 10249,
#              containerd の streaming（ランダムなポート）
#   ノードの IPv4: kubelet 10250, metrics-server 4443（APIService から届く必要がある）
# ネットワーク: Pod 10.244.0.0/16（ノードは 10.244.0.0/24、ブリッジ cni0）、Service 10.96.0.0/16。
# アプリのイメージは docker push 127.0.0.1:5000/NAME:TAG（または localhost:5000/...）で入れる。
# down は etcd・kubelet・containerd・レジストリのデータを消す（証明書と kubeconfig は残す）。
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- 場所（環境変数で変えられる） ------------------------------------------------
CACHE_DIR=${MII_E2E_CACHE_DIR:-/var/cache/mii-e2e}   # ビルド結果と Go のキャッシュ（down でも残す）
STATE_DIR=${MII_E2E_STATE_DIR:-/var/lib/mii-e2e}     # 証明書・etcd・kubelet・containerd のデータ
RUN_DIR=${MII_E2E_RUN_DIR:-/run/mii-e2e}             # pid ファイル・containerd のソケットと state
LOG_DIR=${MII_E2E_LOG_DIR:-/var/log/mii-e2e}         # コンポーネントごとのログ

PKI=$STATE_DIR/pki
CFG=$STATE_DIR/config
ADMIN_KUBECONFIG=$STATE_DIR/admin.kubeconfig
PID_DIR=$RUN_DIR/pids
CONTAINERD_STATE=$RUN_DIR/containerd
CONTAINERD_SOCK=$CONTAINERD_STATE/containerd.sock
CNI_CONF=/etc/cni/net.d/00-mii-e2e.conflist
CNI_BIN_DIR=/usr/lib/cni
CNI_NETWORK=mii-e2e

# --- ネットワーク（Docker の 172.17.0.0/16 やホストのネットワークと重ならない範囲） ---------
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24      # 最初の（唯一の）ノードに controller-manager が割り当てる範囲と同じ
SERVICE_CIDR=10.96.0.0/16
SERVICE_FIRST_IP=10.96.0.1
API_PORT=6443
ETCD_PORT=2379
ETCD_PEER_PORT=2380
REGISTRY_ADDR=127.0.0.1:5000
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
KCM_PORT=10257
SCHEDULER_PORT=10259
PROXY_HEALTHZ_PORT=10256
PROXY_METRICS_PORT=10249
METRICS_SERVER_PORT=4443
FIREWALL_COMMENT=mii-e2e

# --- 版: ラッパーモジュールの go.mod が唯一の出どころ -----------------------------------
K8S_MODULE_DIR=$HERE/modules/kubernetes
ETCD_MODULE_DIR=$HERE/modules/etcd
# go.mod の require から版を読む（ブロック内の行と 1 行の require の両方）
required_version() {
  awk -v m="$2" '$1 == "require" && $2 == m {print $3; exit} $1 == m && $2 ~ /^v/ {print $2; exit}' "$1"
}
K8S_VERSION=$(required_version "$K8S_MODULE_DIR/go.mod" k8s.io/kubernetes)
METRICS_SERVER_VERSION=$(required_version "$K8S_MODULE_DIR/go.mod" sigs.k8s.io/metrics-server)
ETCD_VERSION=$(required_version "$ETCD_MODULE_DIR/go.mod" go.etcd.io/etcd/server/v3)
# ビルド方法を変えたらこの値を上げる（キャッシュ済みのバイナリを作り直させる）
BUILD_RECIPE=1

VERSION_DIR=$CACHE_DIR/$K8S_VERSION
BIN=$VERSION_DIR/bin
GO_CACHE_ROOT=$CACHE_DIR/go
PAUSE_OCI=$VERSION_DIR/pause/pause-oci.tar

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
COMPONENTS=(registry etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy metrics-server)

# 起動時に保存し down で戻す sysctl（kubelet と kube-proxy が書き換えうるもの）
SAVED_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin:$PATH

START_TIME=$(date +%s)
NODE_IP=
NODE_NAME=

# --- 出力 -----------------------------------------------------------------------------

# 進捗を 1 行（開始からの経過秒つき）
step() {
  printf '[%4ds] %s\n' "$(($(date +%s) - START_TIME))" "$*"
}

# 失敗をはっきり 1 行で伝えて終わる
die() {
  printf 'cluster: %s\n' "$*" >&2
  exit 1
}

# 予期しないコマンドの失敗（set -e）も 1 行で伝える
on_error() {
  local status=$? line=$1
  trap - ERR
  # サブシェル（$(...) やバックグラウンドのビルド）では黙って終わる。結果は呼び出し側が判断する
  [[ $BASHPID == "$$" ]] || exit "$status"
  printf 'cluster: unexpected failure (exit %s) at cluster.sh line %s; logs are in %s\n' \
    "$status" "$line" "$LOG_DIR" >&2
  exit "$status"
}
trap 'on_error $LINENO' ERR

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (it starts the kubelet, containerd and changes iptables)"
}

# 同時に 2 つの up/down が走らないようにする
take_lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 900 9 || die "another cluster.sh holds $STATE_DIR/lock"
}

kc() {
  "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=20s "$@"
}

ctr_k8s() {
  ctr --address "$CONTAINERD_SOCK" --connect-timeout 5s --timeout 120s --namespace k8s.io "$@"
}

# --- プロセス管理 -----------------------------------------------------------------------

pidfile() { echo "$PID_DIR/$1.pid"; }

# コンポーネントの実行ファイル（pid の使い回しを見分けるのに使う）
binary_of() {
  case $1 in
    registry) command -v docker-registry || echo /usr/bin/docker-registry ;;
    containerd) command -v containerd || echo /usr/bin/containerd ;;
    etcd | kube-* | kubelet | metrics-server) echo "$BIN/$1" ;;
  esac
}

# pid が生きていて（ゾンビでなく）、実行ファイルが期待どおりなら真
pid_alive() {
  local pid=$1 expected=$2 exe state
  [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ $state != Z && $state != X ]] || return 1
  [[ -z $expected ]] && return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $exe == "$expected" || $exe == "$expected (deleted)" ]]
}

# 動いていれば pid を出す
running_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  pid_alive "$pid" "$(binary_of "$1")" || return 1
  echo "$pid"
}

# バックグラウンドのホストプロセスとして起動する（ログは追記、pid はファイルへ）
spawn() {
  local name=$1
  shift
  local log=$LOG_DIR/$name.log
  printf '=== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log"
  # setsid: 呼び出した端末や CI のプロセスグループのシグナルを受けないようにする
  # 9>&-: ロック（fd 9）を引き継がせない（引き継ぐと次の up/down が待ち続ける）
  setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
}

# 条件が成り立つまで待つ。プロセスが落ちたり時間切れなら、名前とログを 1 行で出して終わる
wait_for() {
  local component=$1 timeout=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $component ]] && ! running_pid "$component" >/dev/null; then
      die "$component exited while waiting for it to $what; see $LOG_DIR/$component.log"
    fi
    if ((SECONDS >= deadline)); then
      die "$component did not $what within ${timeout}s; see $LOG_DIR/$component.log"
    fi
    sleep 1
  done
}

# TERM で止め、時間内に終わらなければ KILL
stop_pid() {
  local pid=$1 timeout=${2:-30} deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + timeout))
  while pid_alive "$pid" "" && ((SECONDS < deadline)); do sleep 0.2; done
  if pid_alive "$pid" ""; then
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_alive "$pid" "" && ((SECONDS < deadline)); do sleep 0.2; done
  fi
}

stop_component() {
  local name=$1 timeout=${2:-30} pid
  if pid=$(running_pid "$name"); then
    stop_pid "$pid" "$timeout"
    step "$name: stopped (pid $pid)"
  fi
  rm -f "$(pidfile "$name")"
}

# --- ヘルスチェック -------------------------------------------------------------------------

healthy() {
  case $1 in
    registry) curl -fsS --max-time 3 "http://$REGISTRY_ADDR/v2/" ;;
    etcd) curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_PORT/health" | grep '"health":"true"' >/dev/null ;;
    containerd) ctr --address "$CONTAINERD_SOCK" --connect-timeout 2s version ;;
    kube-apiserver) curl -fsS --max-time 3 --cacert "$PKI/ca.crt" "https://127.0.0.1:$API_PORT/readyz" ;;
    kube-controller-manager) curl -fsSk --max-time 3 "https://127.0.0.1:$KCM_PORT/healthz" ;;
    kube-scheduler) curl -fsSk --max-time 3 "https://127.0.0.1:$SCHEDULER_PORT/healthz" ;;
    kubelet) curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" ;;
    kube-proxy) curl -fsS --max-time 3 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/livez" ;;
    metrics-server) curl -fsSk --max-time 3 "https://$NODE_IP:$METRICS_SERVER_PORT/livez" ;;
  esac
}

address_of() {
  case $1 in
    registry) echo "http://$REGISTRY_ADDR" ;;
    etcd) echo "http://127.0.0.1:$ETCD_PORT" ;;
    containerd) echo "unix://$CONTAINERD_SOCK" ;;
    kube-apiserver) echo "https://127.0.0.1:$API_PORT" ;;
    kube-controller-manager) echo "https://127.0.0.1:$KCM_PORT" ;;
    kube-scheduler) echo "https://127.0.0.1:$SCHEDULER_PORT" ;;
    kubelet) echo "https://${NODE_IP:-<node-ip>}:$KUBELET_PORT" ;;
    kube-proxy) echo "http://127.0.0.1:$PROXY_HEALTHZ_PORT (healthz)" ;;
    metrics-server) echo "https://${NODE_IP:-<node-ip>}:$METRICS_SERVER_PORT" ;;
  esac
}

# --- ノードの名前とアドレス -------------------------------------------------------------------

# 既定経路のインタフェースの IPv4 をノードのアドレスにする。up で決めたものを state に残し、
# status/down は同じ値を使う
detect_node() {
  if [[ -f $STATE_DIR/node.env ]]; then
    # shellcheck source=/dev/null
    . "$STATE_DIR/node.env"
  fi
  if [[ ${1:-} == fresh || -z $NODE_IP ]]; then
    NODE_IP=${MII_E2E_NODE_IP:-$({ ip -4 route get 1.1.1.1 2>/dev/null || true; } | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)}
    if [[ -z $NODE_IP ]]; then
      NODE_IP=$({ ip -4 -o addr show scope global 2>/dev/null || true; } |
        awk '$2 != "docker0" && $2 != "cni0" {sub(/\/.*/, "", $4); print $4; exit}')
    fi
    NODE_NAME=${MII_E2E_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
    if ! [[ $NODE_NAME =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]]; then
      NODE_NAME=mii-e2e-node
    fi
  fi
}

save_node() {
  printf 'NODE_IP=%s\nNODE_NAME=%s\n' "$NODE_IP" "$NODE_NAME" >"$STATE_DIR/node.env"
}

# --- パッケージ ---------------------------------------------------------------------------

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v containerd-shim-runc-v2 >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  local plugin
  for plugin in bridge host-local portmap loopback; do
    [[ -x $CNI_BIN_DIR/$plugin ]] || { missing+=(containernetworking-plugins); break; }
  done
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v gcc >/dev/null || missing+=(gcc)
  [[ -f $(gcc -print-file-name=libc.a 2>/dev/null || echo none) ]] || missing+=(libc6-dev)
  if ((${#missing[@]} == 0)); then
    step "packages: present"
    return
  fi
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  step "packages: installing ${missing[*]} with apt"
  {
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { timeout 600 apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  } >>"$LOG_DIR/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed; see $LOG_DIR/apt.log"
}

# --- ビルド -------------------------------------------------------------------------------

go_env() {
  command -v go >/dev/null || die "the Go toolchain is missing (go is not on PATH); it is needed to build Kubernetes"
  export GOMODCACHE=$GO_CACHE_ROOT/mod GOCACHE=$GO_CACHE_ROOT/build GOPATH=$GO_CACHE_ROOT/path
  export GOFLAGS="-mod=readonly -buildvcs=false -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0
}

# go の各コマンドに上限時間をつける（ネットワークが止まっても up が終わるように）
gocmd() {
  timeout -k 30 "${MII_E2E_BUILD_TIMEOUT:-3600}" go "$@"
}

# 入力ファイルとレシピから作るスタンプ（変われば作り直す）
stamp_of() {
  { echo "recipe=$BUILD_RECIPE"; cat "$@"; } | sha256sum | cut -d' ' -f1
}

stamp_ok() {
  local name=$1 want=$2
  shift 2
  [[ -f $BIN/.$name.stamp && $(<"$BIN/.$name.stamp") == "$want" ]] || return 1
  local file
  for file in "$@"; do [[ -x $BIN/$file ]] || return 1; done
}

# -X で埋める版情報（hack/lib/version.sh と同じ変数）
k8s_ldflags() {
  local info=$1 major minor date commit flags="-s -w" pkg
  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  date=$(sed -n 's/.*"Time"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$info" | head -n1 | sed 's/\.[0-9]*Z$/Z/')
  commit=$(sed -n 's/.*"Hash"[[:space:]]*:[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$info" | head -n1)
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
    [[ -n $commit ]] && flags+=" -X $pkg.gitCommit=$commit"
  done
  echo "$flags"
}

build_kubernetes() {
  local src=$VERSION_DIR/src/kubernetes out=$VERSION_DIR/tmp/kubernetes info
  rm -rf "$src" "$out"
  mkdir -p "$src" "$out"
  cp "$K8S_MODULE_DIR"/{go.mod,go.sum,tools.go} "$src/"
  cd "$src"
  gocmd mod download k8s.io/kubernetes
  info=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.info
  local cmds=() c
  for c in "${K8S_COMMANDS[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$c"); done
  # 1 回の go build にまとめると、共通のパッケージを 1 度だけコンパイルし 2 コアを使い切る
  gocmd build -ldflags "$(k8s_ldflags "$info")" -o "$out/" "${cmds[@]}"
  # metrics-server も同じモジュール（k8s.io/* は同じ版）で作るので、コンパイル済みのパッケージを共有する
  gocmd build -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.gitTreeState=clean" \
    -o "$out/" sigs.k8s.io/metrics-server/cmd/metrics-server
  mv -f "$out"/* "$BIN/"
  rm -rf "$out"
}

build_etcd() {
  local src=$VERSION_DIR/src/etcd out=$VERSION_DIR/tmp/etcd
  rm -rf "$src" "$out"
  mkdir -p "$src" "$out"
  cp "$ETCD_MODULE_DIR"/{go.mod,go.sum,tools.go} "$src/"
  cd "$src"
  gocmd build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  mv -f "$out/etcd" "$BIN/etcd"
  rm -rf "$out"
}

# pause.c を静的にコンパイルし、1 レイヤの OCI イメージ（tar）にする
build_pause() {
  local src=$VERSION_DIR/src/pause kdir tag work arch
  rm -rf "$src"
  mkdir -p "$src"
  cp "$K8S_MODULE_DIR"/{go.mod,go.sum,tools.go} "$src/"
  kdir=$(cd "$src" && gocmd mod download -json k8s.io/kubernetes | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [[ -f $kdir/build/pause/linux/pause.c ]] || { echo "pause.c not found in $kdir" >&2; return 1; }
  tag=$(sed -n 's/^TAG ?= *//p' "$kdir/build/pause/Makefile")
  arch=$(go env GOARCH)
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$work/oci/blobs/sha256" "$VERSION_DIR/pause"
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-mii-e2e" -o "$work/rootfs/pause" "$kdir/build/pause/linux/pause.c"
  strip "$work/rootfs/pause"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
  local layer layer_size config config_size manifest manifest_size blobs=$work/oci/blobs/sha256
  layer=$(sha256sum <"$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$blobs/$layer"
  printf '{"architecture":"%s","os":"linux","config":{"User":"65535:65535","Entrypoint":["/pause"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer" >"$work/config.json"
  config=$(sha256sum <"$work/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$blobs/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
  manifest=$(sha256sum <"$work/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$blobs/$manifest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"localhost/mii-e2e/pause:%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$arch" "$tag" "$tag" >"$work/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$PAUSE_OCI.tmp" oci-layout index.json blobs
  mv -f "$PAUSE_OCI.tmp" "$PAUSE_OCI"
  echo "$tag" >"$VERSION_DIR/pause/tag"
  rm -rf "$work"
}

# 足りないものだけ並行してビルドする（Kubernetes と etcd は別のモジュールなので同時に）
build_all() {
  mkdir -p "$BIN" "$VERSION_DIR/tmp"
  local k8s_stamp etcd_stamp pause_stamp
  k8s_stamp=$(stamp_of "$K8S_MODULE_DIR"/{go.mod,go.sum,tools.go})
  etcd_stamp=$(stamp_of "$ETCD_MODULE_DIR"/{go.mod,go.sum,tools.go})
  pause_stamp=$(stamp_of "$K8S_MODULE_DIR/go.mod")
  local names=() pids=() logs=() stamps=() started=()
  if stamp_ok kubernetes "$k8s_stamp" "${K8S_COMMANDS[@]}" metrics-server; then
    step "build: kubernetes $K8S_VERSION + metrics-server $METRICS_SERVER_VERSION cached in $BIN"
  else
    names+=(kubernetes) stamps+=("$k8s_stamp") logs+=("$LOG_DIR/build-kubernetes.log")
  fi
  if stamp_ok etcd "$etcd_stamp" etcd; then
    step "build: etcd $ETCD_VERSION cached"
  else
    names+=(etcd) stamps+=("$etcd_stamp") logs+=("$LOG_DIR/build-etcd.log")
  fi
  if stamp_ok pause "$pause_stamp" && [[ -f $PAUSE_OCI ]]; then
    step "build: pause image cached"
  else
    names+=(pause) stamps+=("$pause_stamp") logs+=("$LOG_DIR/build-pause.log")
  fi
  ((${#names[@]} > 0)) || return 0
  go_env
  local i
  for i in "${!names[@]}"; do
    step "build: ${names[$i]} started (log: ${logs[$i]})"
    : >"${logs[$i]}"
    ("build_${names[$i]}") >>"${logs[$i]}" 2>&1 &
    pids+=($!)
    started+=("$SECONDS")
  done
  # 長いビルドの間も 1 分ごとに 1 行出す（CI が無出力で打ち切らないように）
  local left=${#names[@]} last=$SECONDS status
  local done_flags=()
  while ((left > 0)); do
    for i in "${!names[@]}"; do
      [[ -n ${done_flags[$i]:-} ]] && continue
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        status=0
        wait "${pids[$i]}" || status=$?
        done_flags[i]=1
        left=$((left - 1))
        if ((status != 0)); then
          die "the ${names[$i]} build failed (exit $status); see ${logs[$i]}"
        fi
        echo "${stamps[$i]}" >"$BIN/.${names[$i]}.stamp"
        step "build: ${names[$i]} done in $((SECONDS - started[i]))s"
      fi
    done
    if ((left > 0)); then
      if ((SECONDS - last >= 60)); then
        local busy=()
        for i in "${!names[@]}"; do [[ -z ${done_flags[$i]:-} ]] && busy+=("${names[$i]}"); done
        step "build: still compiling ${busy[*]}"
        last=$SECONDS
      fi
      sleep 2
    fi
  done
  rm -rf "$VERSION_DIR/tmp"
}

# --- 証明書（openssl） --------------------------------------------------------------------

# 署名済みの証明書と鍵を作る: new_cert 名前 CN O 用途(server|client|both) SAN [CA名]
new_cert() {
  local name=$1 cn=$2 org=$3 usage=$4 san=$5 ca=${6:-ca} subject eku ext
  subject="/CN=$cn"
  [[ -n $org ]] && subject="/O=$org$subject"
  case $usage in
    server) eku=serverAuth ;;
    client) eku=clientAuth ;;
    both) eku=serverAuth,clientAuth ;;
  esac
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

new_ca() {
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -days 3650 \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# 証明書を埋め込んだ kubeconfig
write_kubeconfig() {
  local file=$1 cert=$2 user=$3
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mii-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: mii-e2e
  context:
    cluster: mii-e2e
    user: $user
current-context: mii-e2e
EOF
  umask 022
}

ensure_certs() {
  local identity="node=$NODE_NAME ip=$NODE_IP service=$SERVICE_FIRST_IP recipe=1"
  if [[ -f $PKI/identity && $(<"$PKI/identity") == "$identity" && -f $ADMIN_KUBECONFIG ]]; then
    step "certificates: present in $PKI"
    return
  fi
  local name
  for name in "${COMPONENTS[@]}"; do
    if running_pid "$name" >/dev/null; then
      die "certificates must be regenerated (node name or address changed) but $name is running; run 'cluster.sh down' first"
    fi
  done
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  new_ca ca mii-e2e-ca
  new_ca front-proxy-ca mii-e2e-front-proxy-ca
  new_cert apiserver kube-apiserver "" server \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$SERVICE_FIRST_IP,IP:$NODE_IP"
  new_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client ""
  new_cert admin kubernetes-admin system:masters client ""
  new_cert controller-manager system:kube-controller-manager "" client ""
  new_cert scheduler system:kube-scheduler "" client ""
  new_cert kube-proxy system:kube-proxy "" client ""
  new_cert kubelet-client "system:node:$NODE_NAME" system:nodes client ""
  new_cert kubelet "$NODE_NAME" "" server "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  new_cert metrics-server system:metrics-server system:masters client ""
  new_cert front-proxy-client front-proxy-client "" client "" front-proxy-ca
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  write_kubeconfig "$PKI/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$PKI/scheduler.kubeconfig" scheduler system:kube-scheduler
  write_kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
  write_kubeconfig "$PKI/kubelet.kubeconfig" kubelet-client "system:node:$NODE_NAME"
  write_kubeconfig "$PKI/metrics-server.kubeconfig" metrics-server system:metrics-server
  write_kubeconfig "$ADMIN_KUBECONFIG" admin mii-e2e-admin
  chmod 600 "$PKI"/*.key "$PKI"/*.kubeconfig "$ADMIN_KUBECONFIG"
  # 鍵が変わったので古い etcd のデータ（トークンや Secret）は使えない
  rm -rf "$STATE_DIR/etcd"
  echo "$identity" >"$PKI/identity"
  step "certificates: generated in $PKI"
}

# --- 設定ファイル ----------------------------------------------------------------------------

# 作る前に無かったディレクトリを覚え、down で空なら消す
note_created_dir() {
  local dir=$1
  if [[ ! -e $dir ]]; then
    grep -qxF "$dir" "$STATE_DIR/created-dirs" 2>/dev/null || echo "$dir" >>"$STATE_DIR/created-dirs"
  fi
}

# 中身が変わったときだけ書く（kube-proxy は設定ファイルが書き換わると終了するため）
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp"
    mv -f "$tmp" "$file"
  fi
}

write_configs() {
  mkdir -p "$CFG" "$CFG/certs.d/127.0.0.1:5000" "$CFG/certs.d/localhost:5000"
  local host
  # containerd の CRI はレジストリ 127.0.0.1:5000 / localhost:5000 へ平文 HTTP で pull する
  for host in 127.0.0.1:5000 localhost:5000; do
    write_if_changed "$CFG/certs.d/$host/hosts.toml" <<EOF
server = "http://$REGISTRY_ADDR"

[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
EOF
  done

  write_if_changed "$CFG/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
EOF

  # CAP_SYS_RESOURCE が無い（このような VM やコンテナの中）と oom_score_adj を下げられず、runc が
  # サンドボックス（-998）の作成で "can't get final child's PID from pipe: EOF" と失敗する。
  # その場合は containerd 自身の値より下げないようにする
  local restrict_oom=false cap_eff
  cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  if (((16#$cap_eff >> 24 & 1) == 0)); then restrict_oom=true; fi

  # Docker の containerd とは別の、CRI つきの containerd（ソケット・root・state はすべて専用）
  write_if_changed "$CFG/containerd.toml" <<EOF
version = 2
root = "$STATE_DIR/containerd"
state = "$CONTAINERD_STATE"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CONTAINERD_SOCK"

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$STATE_DIR/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = $restrict_oom
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$(dirname "$CNI_CONF")"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          Root = "$RUN_DIR/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CFG/certs.d"
EOF

  # CNI: bridge（ヘアピンあり、外向きはマスカレード）+ host-local + portmap。
  # lo は containerd が loopback プラグインで自分で上げる
  note_created_dir /etc/cni
  note_created_dir /etc/cni/net.d
  mkdir -p "$(dirname "$CNI_CONF")"
  write_if_changed "$CNI_CONF" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE_DIR/cni/networks"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  # クラスタ DNS（CoreDNS）は無い。ホストの名前解決先が届くアドレスならそれを clusterDNS にし、
  # Pod が外の名前を引けるようにする（MissingClusterDNS の警告も出ない）
  local dns
  dns=$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf 2>/dev/null || true)
  local dns_lines="resolvConf: /etc/resolv.conf"
  if [[ $dns =~ ^[0-9.]+$ && ! $dns =~ ^127\. ]]; then
    dns_lines+=$'\n'"clusterDNS: [\"$dns\"]"$'\n'"clusterDomain: cluster.local"
  fi

  write_if_changed "$CFG/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
podLogsDir: $LOG_DIR/pods
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
$dns_lines
EOF

  write_if_changed "$CFG/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $PKI/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
mode: iptables
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# --- ホストの準備 ----------------------------------------------------------------------------

save_sysctls() {
  [[ -f $STATE_DIR/sysctl.saved ]] && return 0
  local key value
  for key in "${SAVED_SYSCTLS[@]}"; do
    value=$(sysctl -n "$key" 2>/dev/null) || continue
    printf '%s=%s\n' "$key" "$value"
  done >"$STATE_DIR/sysctl.saved"
}

prepare_host() {
  save_sysctls
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    die "br_netfilter is not available (/proc/sys/net/bridge missing); Services cannot work from pods"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # Docker は FORWARD の既定を DROP にする。Pod の範囲の転送を許す（down で消す）
  local dir
  for dir in -s -d; do
    iptables -w 30 -C FORWARD "$dir" "$POD_CIDR" -m comment --comment "$FIREWALL_COMMENT" -j ACCEPT 2>/dev/null ||
      iptables -w 30 -I FORWARD 1 "$dir" "$POD_CIDR" -m comment --comment "$FIREWALL_COMMENT" -j ACCEPT
  done
  note_created_dir /var/log/containers
  note_created_dir /var/lib/cni
}

check_network_ranges() {
  local cidr
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    if ip -4 route show to match "${cidr%/*}" 2>/dev/null | grep -v '^default' | grep -vq 'dev cni0'; then
      die "the range $cidr overlaps a route on this machine ($(ip -4 route show to match "${cidr%/*}" | grep -v '^default' | head -n1)); change POD_CIDR/SERVICE_CIDR in cluster.sh"
    fi
  done
}

# --- 起動 ------------------------------------------------------------------------------------

# 動いていれば再利用、無ければ起動する。起動したら 0、再利用なら 1 を返す
ensure_started() {
  local name=$1 pid
  shift
  if pid=$(running_pid "$name"); then
    step "$name: already running (pid $pid)"
    return 1
  fi
  spawn "$name" "$@"
  step "$name: started (pid $(<"$(pidfile "$name")"), log $LOG_DIR/$name.log)"
  return 0
}

start_registry() {
  mkdir -p "$STATE_DIR/registry"
  ensure_started registry "$(command -v docker-registry)" serve "$CFG/registry.yml" || true
}

start_etcd() {
  mkdir -p "$STATE_DIR/etcd"
  chmod 700 "$STATE_DIR/etcd"
  ensure_started etcd "$BIN/etcd" --name=mii-e2e --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="mii-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
    --unsafe-no-fsync=true --log-level=warn || true
}

start_containerd() {
  mkdir -p "$STATE_DIR/containerd" "$CONTAINERD_STATE" "$RUN_DIR/runc"
  ensure_started containerd "$(command -v containerd)" --config "$CFG/containerd.toml" || true
}

start_apiserver() {
  ensure_started kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address="$NODE_IP" --bind-address=127.0.0.1 --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true --v=1 || true
}

start_controller_manager() {
  ensure_started kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" --controllers='*' --v=1 || true
}

start_scheduler() {
  ensure_started kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --v=1 || true
}

start_kubelet() {
  mkdir -p "$STATE_DIR/kubelet" "$LOG_DIR/pods"
  ensure_started kubelet "$BIN/kubelet" --config="$CFG/kubelet.yaml" \
    --kubeconfig="$PKI/kubelet.kubeconfig" --root-dir="$STATE_DIR/kubelet" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1 || true
}

start_kube_proxy() {
  ensure_started kube-proxy "$BIN/kube-proxy" --config="$CFG/kube-proxy.yaml" --v=1 || true
}

start_metrics_server() {
  mkdir -p "$STATE_DIR/metrics-server"
  ensure_started metrics-server "$BIN/metrics-server" \
    --kubeconfig="$PKI/metrics-server.kubeconfig" \
    --authentication-kubeconfig="$PKI/metrics-server.kubeconfig" \
    --authorization-kubeconfig="$PKI/metrics-server.kubeconfig" \
    --bind-address="$NODE_IP" --secure-port="$METRICS_SERVER_PORT" --cert-dir="$STATE_DIR/metrics-server" \
    --kubelet-insecure-tls --kubelet-preferred-address-types=InternalIP --kubelet-use-node-status-port \
    --metric-resolution=15s --v=1 || true
}

# pause イメージを containerd の k8s.io 名前空間へ（レジストリは使わない）
import_pause() {
  # grep -q は使わない（先に終わると ctr が SIGPIPE で失敗し、pipefail で偽になる）
  if ctr_k8s images ls -q 2>/dev/null | grep -xF "$PAUSE_IMAGE" >/dev/null; then
    step "pause image: present in containerd ($PAUSE_IMAGE)"
    return
  fi
  ctr_k8s images import --platform "linux/$(dpkg --print-architecture 2>/dev/null || echo amd64)" "$PAUSE_OCI" \
    >>"$LOG_DIR/containerd.log" 2>&1 || die "containerd could not import the pause image; see $LOG_DIR/containerd.log"
  ctr_k8s images ls -q | grep -xF "$PAUSE_IMAGE" >/dev/null ||
    die "the pause image is missing after the import; see $LOG_DIR/containerd.log"
  step "pause image: imported into containerd ($PAUSE_IMAGE)"
}

# metrics-server はホストプロセス: セレクタの無い Service + ノードのアドレスの EndpointSlice + APIService
register_metrics_api() {
  kc apply --server-side --force-conflicts --field-manager=mii-e2e-cluster -f - >>"$LOG_DIR/metrics-server.log" 2>&1 <<EOF || die "metrics-server could not be registered as v1beta1.metrics.k8s.io; see $LOG_DIR/metrics-server.log"
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    app.kubernetes.io/name: metrics-server
    app.kubernetes.io/managed-by: mii-e2e-cluster
spec:
  ports:
  - name: https
    port: 443
    protocol: TCP
    targetPort: $METRICS_SERVER_PORT
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: metrics-server
    endpointslice.kubernetes.io/managed-by: mii-e2e-cluster
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions:
    ready: true
ports:
- name: https
  port: $METRICS_SERVER_PORT
  protocol: TCP
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels:
    app.kubernetes.io/managed-by: mii-e2e-cluster
spec:
  group: metrics.k8s.io
  version: v1beta1
  service:
    name: metrics-server
    namespace: kube-system
    port: 443
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
}

node_registered() { kc get node "$NODE_NAME"; }
node_ready() {
  [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
default_sa_exists() { kc -n default get serviceaccount default; }
metrics_api_available() {
  [[ $(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}') == True ]]
}
node_metrics_served() {
  kc get --raw "/apis/metrics.k8s.io/v1beta1/nodes/$NODE_NAME" | grep '"cpu"' >/dev/null
}

cmd_up() {
  require_root
  mkdir -p "$STATE_DIR" "$RUN_DIR" "$PID_DIR" "$LOG_DIR" "$CACHE_DIR"
  take_lock
  [[ -n $K8S_VERSION && -n $ETCD_VERSION && -n $METRICS_SERVER_VERSION ]] ||
    die "cannot read the versions from $K8S_MODULE_DIR/go.mod and $ETCD_MODULE_DIR/go.mod"
  step "up: kubernetes $K8S_VERSION, etcd $ETCD_VERSION, metrics-server $METRICS_SERVER_VERSION"
  local any='' name
  for name in "${COMPONENTS[@]}"; do
    if running_pid "$name" >/dev/null; then any=1; fi
  done
  # 何も動いていなければ新しく始める: 前回のログは previous/ へ移し、ノードの名前とアドレスを調べ直す
  if [[ -z $any ]]; then
    mkdir -p "$LOG_DIR/previous"
    find "$LOG_DIR" -maxdepth 1 -name '*.log' -exec mv -f {} "$LOG_DIR/previous/" \;
  fi
  ensure_packages
  build_all
  PAUSE_IMAGE=localhost/mii-e2e/pause:$(<"$VERSION_DIR/pause/tag")
  if [[ -z $any ]]; then detect_node fresh; else detect_node; fi
  [[ -n $NODE_IP ]] || die "cannot find this machine's IPv4 address (no default route); set MII_E2E_NODE_IP"
  save_node
  step "node: $NODE_NAME at $NODE_IP (pods $POD_CIDR, services $SERVICE_CIDR)"
  check_network_ranges
  ensure_certs
  write_configs
  prepare_host

  # データ層とランタイムを同時に起動してから、順に待つ
  start_registry
  start_etcd
  start_containerd
  wait_for registry 30 "answer on http://$REGISTRY_ADDR/v2/" healthy registry
  wait_for etcd 60 "become healthy" healthy etcd
  wait_for containerd 60 "answer on $CONTAINERD_SOCK" healthy containerd
  import_pause

  start_apiserver
  wait_for kube-apiserver 120 "become ready" healthy kube-apiserver
  step "kube-apiserver: ready"
  start_controller_manager
  start_scheduler
  start_kubelet
  wait_for kube-controller-manager 60 "become healthy" healthy kube-controller-manager
  wait_for kube-scheduler 60 "become healthy" healthy kube-scheduler
  wait_for kubelet 120 "register the node $NODE_NAME" node_registered
  # kube-proxy はノードのオブジェクトから自分のアドレスを知るので、登録の後に起動する
  start_kube_proxy
  start_metrics_server
  register_metrics_api
  wait_for kube-proxy 60 "become healthy" healthy kube-proxy
  wait_for kubelet 120 "become ready" node_ready
  step "kubelet: node $NODE_NAME is Ready"
  wait_for kube-controller-manager 60 "create the default ServiceAccount" default_sa_exists
  wait_for metrics-server 60 "become healthy" healthy metrics-server
  wait_for metrics-server 120 "become available as APIService v1beta1.metrics.k8s.io" metrics_api_available
  wait_for metrics-server 120 "serve node metrics" node_metrics_served
  step "metrics-server: node metrics available"
  step "up: cluster ready; KUBECONFIG=$ADMIN_KUBECONFIG"
}

# --- 停止と後片付け -------------------------------------------------------------------------

# 自分の containerd のシム（コマンドラインにソケットのパスを持つもの）
our_shims() {
  local dir pid cmd
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    cmd=$({ tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *containerd-shim* && $cmd == *"-address $CONTAINERD_SOCK "* ]] && echo "$pid"
  done
  return 0
}

# kubelet の cgroup（kubepods）にいるプロセス = Pod のコンテナのプロセス
pod_processes() {
  { find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -un
}

kill_pods() {
  local ids id n=0
  if running_pid containerd >/dev/null && healthy containerd >/dev/null 2>&1; then
    ids=$(ctr_k8s tasks ls -q 2>/dev/null || true)
    for id in $ids; do
      ctr_k8s tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
      n=$((n + 1))
    done
    for id in $ids; do ctr_k8s tasks rm -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_k8s containers ls -q 2>/dev/null || true); do
      ctr_k8s containers rm "$id" >/dev/null 2>&1 || true
    done
  fi
  # containerd が落ちていた場合や取りこぼしは cgroup から探して止める
  local pids
  pids=$(pod_processes)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  fi
  if ((n > 0)); then step "pods: killed $n containers"; fi
}

kill_shims() {
  local pids
  pids=$(our_shims)
  [[ -z $pids ]] && return 0
  local pid
  for pid in $pids; do stop_pid "$pid" 5; done
  step "containerd: stopped $(wc -w <<<"$pids") leftover shims"
}

unmount_under() {
  local root=$1 mounts m
  for _ in 1 2 3 4 5; do
    mounts=$(awk -v r="$root" '{p = $5; gsub(/\\040/, " ", p); if (p == r || index(p, r "/") == 1) print p}' /proc/self/mountinfo | sort -r)
    [[ -z $mounts ]] && return 0
    while IFS= read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done <<<"$mounts"
  done
}

# KUBE-* と CNI-* のチェーンと、それらへのジャンプを消す（Docker のルールには触れない）
sweep_iptables() {
  local ipt=$1 table rule chains chain re='KUBE-|CNI-'
  command -v "$ipt" >/dev/null || return 0
  for table in filter nat mangle raw; do
    "$ipt" -w 30 -t "$table" -S >/dev/null 2>&1 || continue
    while IFS= read -r rule; do
      [[ -n $rule ]] || continue
      eval "\"$ipt\" -w 30 -t $table -D ${rule#-A }" 2>/dev/null || true
    done < <("$ipt" -w 30 -t "$table" -S | grep -E -- "^-A " | grep -E -- "-[jg] ($re)" | grep -Ev -- "^-A ($re)" || true)
    chains=$("$ipt" -w 30 -t "$table" -S | sed -n -E "s/^-N (($re)[^ ]*)$/\1/p")
    for chain in $chains; do "$ipt" -w 30 -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do "$ipt" -w 30 -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}

cleanup_network() {
  local dir link
  # 自分で入れた FORWARD の許可
  for dir in -s -d; do
    while iptables -w 30 -D FORWARD "$dir" "$POD_CIDR" -m comment --comment "$FIREWALL_COMMENT" -j ACCEPT 2>/dev/null; do :; done
  done
  if [[ -x $BIN/kube-proxy ]]; then
    timeout 120 "$BIN/kube-proxy" --cleanup --v=0 >>"$LOG_DIR/kube-proxy.log" 2>&1 || true
  fi
  sweep_iptables iptables
  sweep_iptables ip6tables
  # ブリッジにつながった veth とブリッジ（netns が消えれば veth も消えるが、念のため）
  if ip link show cni0 >/dev/null 2>&1; then
    for link in $(ip -o link show master cni0 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$link" 2>/dev/null || true
    done
    ip link del cni0 2>/dev/null || true
  fi
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
}

cleanup_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/kubepods* /sys/fs/cgroup/*/kubepods*; do
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

restore_sysctls() {
  [[ -f $STATE_DIR/sysctl.saved ]] || return 0
  local line
  while IFS= read -r line; do
    if [[ -n $line ]]; then sysctl -qw "$line" 2>/dev/null || true; fi
  done <"$STATE_DIR/sysctl.saved"
  rm -f "$STATE_DIR/sysctl.saved"
}

cleanup_files() {
  rm -f "$CNI_CONF"
  # kubelet が /var/log/containers に作るリンク（このクラスタの Pod のログを指すもの）
  local link dir
  for link in /var/log/containers/*.log; do
    [[ -L $link && $(readlink "$link") == "$LOG_DIR/pods/"* ]] && rm -f "$link"
  done
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  if [[ -f $STATE_DIR/created-dirs ]]; then
    # 作ったディレクトリは深いものから、空なら消す（/var/lib/cni はキャッシュだけなら中身ごと）
    while IFS= read -r dir; do
      [[ $dir == /var/lib/cni ]] && rm -rf --one-file-system /var/lib/cni/results /var/lib/cni/networks 2>/dev/null
      rmdir "$dir" 2>/dev/null || true
    done < <(sort -r "$STATE_DIR/created-dirs")
    rm -f "$STATE_DIR/created-dirs"
  fi
  # 実行時のデータは消す（証明書と kubeconfig は残し、次の up で使う）
  local path
  for path in etcd kubelet containerd cni registry metrics-server config; do
    rm -rf --one-file-system "${STATE_DIR:?}/$path" 2>/dev/null || true
  done
  rm -rf --one-file-system "${RUN_DIR:?}/containerd" "$RUN_DIR/runc" "$PID_DIR" "$LOG_DIR/pods" 2>/dev/null || true
  rmdir "$RUN_DIR" 2>/dev/null || true
}

cmd_down() {
  require_root
  mkdir -p "$LOG_DIR"
  take_lock
  detect_node
  step "down: stopping the cluster"
  # kubelet を先に止める（止めないと殺したコンテナを作り直す）
  stop_component kubelet 30
  kill_pods
  stop_component kube-proxy 15
  stop_component metrics-server 15
  stop_component kube-scheduler 15
  stop_component kube-controller-manager 15
  stop_component kube-apiserver 30
  stop_component containerd 30
  kill_shims
  stop_component etcd 30
  stop_component registry 15
  # 取りこぼした Pod のプロセスがあれば止める
  local pids
  pids=$(pod_processes)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 1
  fi
  unmount_under "$STATE_DIR/kubelet"
  unmount_under "$CONTAINERD_STATE"
  unmount_under "$STATE_DIR/containerd"
  unmount_under "$RUN_DIR"
  unmount_under "$STATE_DIR"
  cleanup_network
  cleanup_cgroups
  cleanup_files
  restore_sysctls
  local left
  left=$(awk -v a="$STATE_DIR" -v b="$RUN_DIR" '{p = $5; if (index(p, a "/") == 1 || index(p, b "/") == 1) print p}' /proc/self/mountinfo | wc -l)
  if ((left > 0)); then
    die "down left $left mounts under $STATE_DIR or $RUN_DIR (see 'mount')"
  fi
  step "down: done (certificates and the kubeconfig kept in $STATE_DIR; build cache in $CACHE_DIR)"
}

cmd_status() {
  detect_node
  local name pid stopped=0
  for name in "${COMPONENTS[@]}"; do
    if pid=$(running_pid "$name"); then
      printf '%-24s running  pid %-7s %s\n' "$name" "$pid" "$(address_of "$name")"
    else
      printf '%-24s stopped  %-11s %s\n' "$name" "" "$(address_of "$name")"
      stopped=1
    fi
  done
  ((stopped == 0)) || exit 3
}

cmd_kubeconfig() {
  [[ -f $ADMIN_KUBECONFIG ]] || die "no kubeconfig yet at $ADMIN_KUBECONFIG; run 'cluster.sh up' first"
  echo "$ADMIN_KUBECONFIG"
}

usage() {
  cat <<EOF
usage: cluster.sh up|down|status|kubeconfig|kubectl ARGS...
  up          build (cached in $CACHE_DIR) and start a single-node Kubernetes $K8S_VERSION
  down        stop everything it started and clean up mounts, iptables, the cni0 bridge and cgroups
  status      one line per component (exit 3 when any is stopped)
  kubeconfig  print the path of the admin kubeconfig
  kubectl     run kubectl $K8S_VERSION against the cluster
EOF
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) cmd_kubeconfig ;;
  kubectl)
    shift
    [[ -x $BIN/kubectl ]] || die "kubectl is not built yet; run 'cluster.sh up' first"
    exec "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
