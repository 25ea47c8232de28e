#!/usr/bin/env bash
# 本物の minikube を、公式のソースからビルドしてこのホストで動かす。ドライバーは 2 つ:
#   --driver=none    （既定）kubelet と containerd をこのホストで直接動かす（プロファイル minikube）
#   --driver=docker  利用者の minikube の既定: ノードは特権コンテナ（kicbase 互換のイメージを debootstrap から
#                    作る）で、中に systemd・dockerd・cri-dockerd。`minikube docker-env` が使える（プロファイル
#                    mii-docker）。2 つは同時には動かさない（片方を down してからもう片方を up する）
#
#   minikube.sh up [--driver=D]          ビルド（初回のみ、版ごとにキャッシュ）し、ホストを準備して minikube start、
#                                        metrics-server アドオンを有効にし、ノードが Ready でメトリクスが取れるまで待つ。
#   minikube.sh kubeconfig [--driver=D]  kubeconfig のパスを出す（current-context はそのプロファイル）。
#   minikube.sh env [--driver=D]         このクラスタを使うための export 文（eval "$(minikube.sh env)"）:
#                                        KUBECONFIG、MINIKUBE_HOME、minikube と kubectl のある PATH。
#   minikube.sh status [--driver=D]      minikube status と、（none）レジストリ・containerd の 1 行ずつ。
#                                        すべて動いていれば 0、止まっているものがあれば 3。
#   minikube.sh down [--driver=D]        minikube delete と、up と minikube がホストに加えたものの後片付け。
#                                        最後に up の前のホストの要約と比べ、違いがあれば並べて失敗する。
#   minikube.sh down --recover [--driver=D]
#                                        途中で断たれた実行（ホストの再起動、CI の打ち切り）の残りを片付ける。
#                                        up の跡が無ければ何もしない。要約との違い（止まったままの Docker など）は
#                                        警告にとどめ、要約を捨てる（次の up が取り直す）。
#
# 材料はすべて公開のソースから: minikube・crictl・cri-dockerd・Kubernetes（kubeadm を含む）・etcd・CoreDNS・
# metrics-server は Go モジュールプロキシ（modules/ のラッパーモジュール）から、containerd・runc・
# CNI プラグイン・docker-registry・ノードの Debian は Debian のパッケージから。クラスタのイメージはビルドした
# バイナリから作って入れる（lib/images.sh）。コンテナレジストリからは何も pull しない。
#
# 構成: このファイルは入口だけ。処理は lib/*.sh（common: ドライバー・場所・出力・台帳、build: ビルド、
# images: イメージ、host: ホストの準備、kic: docker ドライバーのノードのイメージと dockerd、start: minikube、
# down: 後片付け）、ホストに置くファイルのひな形は templates/ にある。
#
# 必要なもの: root、Go（modules/*/go.mod の go 行以上）、apt、（docker ドライバー）動いている Docker。
# 端末へのメッセージは英語。
# アプリのイメージは `mii deploy`（minikube image load）、docker-env の下の `mii build`、または
# （none）レジストリ 127.0.0.1:5000 への push で入れる。
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --driver=D（--driver D）をどこに書いてもよい。残りの引数はコマンドとそのオプション。
# 内部の入口（_call）の引数は関数へそのまま渡す（minikube start の --driver を取り去らない）
ARGS=()
while (($# > 0)) && [[ ${ARGS[0]:-$1} != _call ]]; do
  case $1 in
    --driver=*) MII_MINIKUBE_DRIVER=${1#--driver=} ;;
    --driver)
      MII_MINIKUBE_DRIVER=${2:-}
      shift
      ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
set -- "${ARGS[@]+"${ARGS[@]}"}" "$@"
export MII_MINIKUBE_DRIVER=${MII_MINIKUBE_DRIVER:-none}

for lib in common build images host kic start down; do
  # shellcheck source=/dev/null
  . "$HERE/lib/$lib.sh"
done
trap 'on_error $LINENO "${BASH_SOURCE[0]}"' ERR

cmd_up() {
  require_root
  take_lock
  require_other_driver_down
  step "up: minikube $MINIKUBE_VERSION ($DRIVER driver), Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, CoreDNS $COREDNS_VERSION, metrics-server $METRICS_SERVER_VERSION"
  if minikube_running; then
    [[ $DRIVER == docker ]] || start_registry
    step "up: minikube is already running; KUBECONFIG=$KUBECONFIG_FILE"
    return
  fi
  ensure_packages
  build_all
  build_images
  [[ $DRIVER != docker ]] || build_node_image
  # 利用者の PATH に出すのは minikube と kubectl だけ（env が $STATE_DIR/bin を足す）
  mkdir -p "$STATE_DIR/bin"
  ln -sfn "$BIN/minikube" "$STATE_DIR/bin/minikube"
  ln -sfn "$BIN/kubectl" "$STATE_DIR/bin/kubectl"
  # 最初の up の前のホストを覚える（down が比べる）。失敗した up の後の up では取り直さない
  if [[ ! -f $SNAPSHOT_FILE ]]; then
    machine_state >"$SNAPSHOT_FILE.tmp"
    mv -f "$SNAPSHOT_FILE.tmp" "$SNAPSHOT_FILE"
  fi
  save_sysctls
  if [[ $DRIVER == docker ]]; then
    claim_docker_host_paths
    install_runtime_wrapper
    start_minikube_docker
  else
    claim_host_paths
    install_tools
    start_containerd
    import_images
    start_registry
    start_minikube
  fi
  step "up: minikube ready; KUBECONFIG=$KUBECONFIG_FILE (or eval \"\$($0 env --driver=$DRIVER)\")"
}

cmd_down() {
  local recover=false
  case ${1:-} in
    "") ;;
    --recover) recover=true ;;
    *) die "down: unknown option ${1}" ;;
  esac
  require_root
  if $recover && [[ ! -d $STATE_DIR ]]; then
    step "down: nothing left from an earlier up ($DRIVER driver)"
    return
  fi
  take_lock
  step "down: stopping minikube ($DRIVER driver)"
  if [[ $DRIVER == docker ]]; then
    local nodes
    nodes=$(node_containers)
    stop_minikube
    cleanup_docker_objects "$nodes"
    cleanup_cgroup_hierarchies
    restore_docker_runtime
  else
    stop_minikube
    stop_kubelet
    kill_pods
    stop_containerd
    kill_pods
    unmount_under /var/lib/kubelet
    unmount_under /run/containerd
    unmount_under /var/lib/containerd
    cleanup_network
    cleanup_cgroups
    stop_registry
  fi
  restore_sysctls
  undo_ledger
  rm -rf --one-file-system "$MINIKUBE_HOME_DIR" "$KUBECONFIG_FILE"
  if $recover; then verify_machine --warn; else verify_machine; fi
  # 状態の場所そのものも消す（ロックのファイルは開いたままでも消せる）
  rm -rf --one-file-system "$STATE_DIR"
  step "down: done (build cache kept in $CACHE_DIR, logs in $LOG_DIR)"
}

cmd_status() {
  local bad=0
  if minikube_running; then
    mk status 2>/dev/null | sed 's/^/minikube: /'
  else
    echo "minikube: not running ($DRIVER driver)"
    bad=1
  fi
  if [[ $DRIVER == none ]]; then
    if containerd_running >/dev/null 2>&1; then echo "containerd: running on $CONTAINERD_SOCK"; else echo "containerd: stopped"; bad=1; fi
    if registry_running >/dev/null 2>&1; then echo "registry: running on http://$REGISTRY_ADDR"; else echo "registry: stopped"; bad=1; fi
  fi
  ((bad == 0)) || return 3
}

cmd_kubeconfig() {
  echo "$KUBECONFIG_FILE"
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  printf 'export MINIKUBE_HOME=%q\n' "$MINIKUBE_HOME_DIR"
  printf 'export MINIKUBE_WANTUPDATENOTIFICATION=false\n'
  # shellcheck disable=SC2016  # $PATH は eval する側で展開させる
  printf 'export PATH=%q:"$PATH"\n' "$STATE_DIR/bin"
}

usage() {
  sed -n '2,/^set -E/p' "$0" | sed -e '/^set -E/d' -e 's/^# \{0,1\}//'
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down "${@:2}" ;;
  status) cmd_status ;;
  kubeconfig) cmd_kubeconfig ;;
  env) cmd_env ;;
  # run_step が関数を別のプロセスで動かすための内部の入口
  _call)
    shift
    "$@"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
