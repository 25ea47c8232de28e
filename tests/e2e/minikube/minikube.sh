#!/usr/bin/env bash
# 本物の minikube（none ドライバー・containerd）を、公式のソースからビルドしてこのホストで動かす。
#
#   minikube.sh up          ビルド（初回のみ、版ごとにキャッシュ）し、ホストを準備して minikube start、
#                           metrics-server アドオンを有効にし、ノードが Ready でメトリクスが取れるまで待つ。
#   minikube.sh kubeconfig  kubeconfig のパスを出す（current-context は minikube）。
#   minikube.sh env         このクラスタを使うための export 文（eval "$(minikube.sh env)"）:
#                           KUBECONFIG、MINIKUBE_HOME、minikube と kubectl のある PATH。
#   minikube.sh status      minikube status と、レジストリ・containerd の 1 行ずつ。すべて動いていれば 0、
#                           止まっているものがあれば 3。
#   minikube.sh down        minikube delete と、up とminikube がホストに加えたものの後片付け。
#                           最後に up の前のホストの要約と比べ、違いがあれば並べて失敗する。
#   minikube.sh down --recover
#                           途中で断たれた実行（ホストの再起動、CI の打ち切り）の残りを片付ける。
#                           up の跡が無ければ何もしない。要約との違い（止まったままの Docker など）は
#                           警告にとどめ、要約を捨てる（次の up が取り直す）。
#
# 材料はすべて公開のソースから: minikube・crictl・Kubernetes（kubeadm を含む）・etcd・CoreDNS・
# metrics-server は Go モジュールプロキシ（modules/ のラッパーモジュール）から、containerd・runc・
# CNI プラグイン・docker-registry は Debian のパッケージから。クラスタのイメージはビルドした
# バイナリから作って containerd へ入れる（lib/images.sh）。コンテナレジストリからは何も pull しない。
#
# 構成: このファイルは入口だけ。処理は lib/*.sh（common: 場所・出力・台帳、build: ビルド、
# images: イメージ、host: ホストの準備、start: minikube、down: 後片付け）、ホストに置くファイルの
# ひな形は templates/ にある。
#
# 必要なもの: root、Go（modules/*/go.mod の go 行以上）、apt。端末へのメッセージは英語。
# アプリのイメージは `mii deploy`（minikube image load）か、レジストリ 127.0.0.1:5000 への push で入れる。
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for lib in common build images host start down; do
  # shellcheck source=/dev/null
  . "$HERE/lib/$lib.sh"
done
trap 'on_error $LINENO "${BASH_SOURCE[0]}"' ERR

cmd_up() {
  require_root
  take_lock
  step "up: minikube $MINIKUBE_VERSION, Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, CoreDNS $COREDNS_VERSION, metrics-server $METRICS_SERVER_VERSION"
  if minikube_running; then
    start_registry
    step "up: minikube is already running; KUBECONFIG=$KUBECONFIG_FILE"
    return
  fi
  ensure_packages
  build_all
  build_images
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
  claim_host_paths
  install_tools
  start_containerd
  import_images
  start_registry
  start_minikube
  step "up: minikube ready; KUBECONFIG=$KUBECONFIG_FILE (or eval \"\$($0 env)\")"
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
    step "down: nothing left from an earlier up"
    return
  fi
  take_lock
  step "down: stopping minikube"
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
    echo "minikube: not running"
    bad=1
  fi
  if containerd_running >/dev/null 2>&1; then echo "containerd: running on $CONTAINERD_SOCK"; else echo "containerd: stopped"; bad=1; fi
  if registry_running >/dev/null 2>&1; then echo "registry: running on http://$REGISTRY_ADDR"; else echo "registry: stopped"; bad=1; fi
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
