# shellcheck shell=bash
# shellcheck disable=SC2034  # ここで決める場所と版は、ほかのライブラリが使う
# minikube.sh の共通部分: 場所と版、出力（step・die）、ロック、ログ付きの実行、待ち、
# そして「このスクリプトがホストに加えたもの」の台帳（down はこれを見て元に戻す）。

# --- ドライバー（minikube.sh が --driver から決める） ------------------------------------------
#   none    kubelet と containerd をこのホストで直接動かす（root、systemd の無いホストでも）
#   docker  ノードは特権コンテナ（kicbase 互換のイメージ）で、中に systemd・dockerd・cri-dockerd。
#           利用者の minikube の既定。`minikube docker-env` が使える
DRIVER=${MII_MINIKUBE_DRIVER:-none}
case $DRIVER in
  none)
    # minikube の none ドライバーが受け付けるプロファイル名はこれだけ
    PROFILE=minikube
    DEFAULT_STATE_DIR=/var/lib/mii-minikube DEFAULT_LOG_DIR=/var/log/mii-minikube
    OTHER_DRIVER=docker OTHER_STATE_DIR=/var/lib/mii-minikube-docker
    ;;
  docker)
    # none のプロファイルと並んでも名前がぶつからないように、別の名前にする
    PROFILE=mii-docker
    DEFAULT_STATE_DIR=/var/lib/mii-minikube-docker DEFAULT_LOG_DIR=/var/log/mii-minikube-docker
    OTHER_DRIVER=none OTHER_STATE_DIR=/var/lib/mii-minikube
    ;;
  *)
    printf 'minikube.sh: unknown driver %s (use --driver=none or --driver=docker)\n' "$DRIVER" >&2
    exit 2
    ;;
esac

# --- 場所（環境変数で変えられる） ------------------------------------------------
CACHE_DIR=${MII_MINIKUBE_CACHE_DIR:-/var/cache/mii-e2e} # ビルド結果と Go のキャッシュ（down でも残す。両ドライバー共通）
STATE_DIR=${MII_MINIKUBE_STATE_DIR:-$DEFAULT_STATE_DIR}  # MINIKUBE_HOME・kubeconfig・台帳・レジストリ
LOG_DIR=${MII_MINIKUBE_LOG_DIR:-$DEFAULT_LOG_DIR}        # 手順ごとのログ
# 場所を変えたとき（テスト）は、もう一方のドライバーの状態は見ない
[[ -z ${MII_MINIKUBE_STATE_DIR:-} ]] || OTHER_STATE_DIR=
MINIKUBE_HOME_DIR=$STATE_DIR/home
KUBECONFIG_FILE=$STATE_DIR/kubeconfig
LEDGER=$STATE_DIR/ledger
BACKUP_DIR=$STATE_DIR/backup
SNAPSHOT_FILE=$STATE_DIR/machine-before-up

# minikube が none ドライバーで使うホストの場所（ここに加えたものは down で戻す）
CONTAINERD_CONFIG=/etc/containerd/config.toml
CONTAINERD_SOCK=/run/containerd/containerd.sock
CNI_BIN_DIR=/usr/lib/cni

# テストが push するローカルのレジストリ（Debian の docker-registry）
REGISTRY_ADDR=127.0.0.1:5000

# --- 版: ラッパーモジュールの go.mod が唯一の出どころ -----------------------------------
MODULES=$HERE/modules
TEMPLATES=$HERE/templates

# go.mod の require から版を読む（ブロック内の行と 1 行の require の両方）
required_version() {
  awk -v m="$2" '$1 == "require" && $2 == m {print $3; exit} $1 == m && $2 ~ /^v/ {print $2; exit}' "$1"
}
K8S_VERSION=$(required_version "$MODULES/kubernetes/go.mod" k8s.io/kubernetes)
METRICS_SERVER_VERSION=$(required_version "$MODULES/kubernetes/go.mod" sigs.k8s.io/metrics-server)
ETCD_VERSION=$(required_version "$MODULES/etcd/go.mod" go.etcd.io/etcd/server/v3)
MINIKUBE_VERSION=$(required_version "$MODULES/minikube/go.mod" k8s.io/minikube)
CRICTL_VERSION=$(required_version "$MODULES/cri-tools/go.mod" sigs.k8s.io/cri-tools)
COREDNS_VERSION=$(required_version "$MODULES/coredns/go.mod" github.com/coredns/coredns)
KUBE_ROUTER_VERSION=$(required_version "$MODULES/kube-router/go.mod" github.com/cloudnativelabs/kube-router/v2)
CRI_DOCKERD_VERSION=$(required_version "$MODULES/cri-dockerd/go.mod" github.com/Mirantis/cri-dockerd)

VERSION_DIR=$CACHE_DIR/$K8S_VERSION
BIN=$VERSION_DIR/bin
IMAGE_DIR=$VERSION_DIR/images
GO_CACHE_ROOT=$CACHE_DIR/go

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin:$PATH

START_TIME=$(date +%s)

# --- 出力 -----------------------------------------------------------------------------

# 進捗を 1 行（開始からの経過秒つき）
step() {
  printf '[%4ds] %s\n' "$(($(date +%s) - START_TIME))" "$*"
}

# 失敗をはっきり 1 行で伝えて終わる
die() {
  printf 'minikube.sh: %s\n' "$*" >&2
  exit 1
}

# 予期しないコマンドの失敗（set -e）も 1 行で伝える
on_error() {
  local status=$? line=$1 source=$2
  trap - ERR
  # サブシェル（$(...) やバックグラウンドのビルド）では黙って終わる。結果は呼び出し側が判断する
  [[ $BASHPID == "$$" ]] || exit "$status"
  printf 'minikube.sh: unexpected failure (exit %s) at %s line %s; logs are in %s\n' \
    "$status" "${source#"$HERE"/}" "$line" "$LOG_DIR" >&2
  exit "$status"
}

require_root() {
  [[ $(id -u) -eq 0 ]] ||
    die "must run as root (the none driver runs the kubelet on this host; the docker driver changes its dockerd)"
}

# 2 つのドライバーの minikube は同時には動かさない（ホストの要約と台帳がそれぞれ相手の変更を含んでしまう）
require_other_driver_down() {
  [[ -n $OTHER_STATE_DIR && -d $OTHER_STATE_DIR ]] || return 0
  die "the $OTHER_DRIVER-driver minikube is up (or left over in $OTHER_STATE_DIR); run: $0 down --driver=$OTHER_DRIVER"
}

# 同時に 2 つの up/down が走らないようにする
take_lock() {
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 900 9 || die "another minikube.sh holds $STATE_DIR/lock"
}

# 手順をログへ書きながら、時間の上限つきで実行する。失敗したら手順の名前とログを 1 行で伝えて終わる
#   run_step NAME TIMEOUT COMMAND...
# COMMAND が関数なら、入口（minikube.sh _call）を通して別のプロセスで動かす（timeout は関数を
# 実行できないため）。子はライブラリを読み直し、ライブラリの外の関数は export -f で受け取る
run_step() {
  local name=$1 limit=$2 log=$LOG_DIR/$1.log
  shift 2
  printf '=== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log"
  if declare -F "$1" >/dev/null; then
    export -f "${1?}"
    set -- bash "$HERE/minikube.sh" _call "$@"
  fi
  # 9>&-: ロック（fd 9）を子に引き継がせない
  local status=0
  timeout -k 30 "$limit" "$@" >>"$log" 2>&1 9>&- || status=$?
  ((status != 124 && status != 137)) || die "$name did not finish within ${limit}s; see $log"
  ((status == 0)) || die "$name failed (exit $status); see $log"
}

# 条件が成り立つまで待つ（時間切れは 1 行で伝えて終わる）
#   wait_until TIMEOUT WHAT LOG COMMAND...
wait_until() {
  local limit=$1 what=$2 log=$3 deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what; see $log"
    sleep 2
  done
}

# --- 台帳: up がホストに加えたもの ------------------------------------------------------
# 1 行 1 件: 「種類<TAB>値」。down は新しいものから順に戻す。
#   file    作ったファイル（down で消す）
#   dir     作ったディレクトリ（down で中身ごと消す）
#   backup  書き換えたファイル（元は $BACKUP_DIR にあり、down で戻す。元が無ければ消す）
#   new-in  前からあったディレクトリ（その時の中身の一覧を $BACKUP_DIR に保存し、down で増えたものを消す）
#   empty   ほかのもの（Docker）が作るディレクトリ（down で空のときだけ消す。ほかの利用者のものが入っていれば残す）

ledger_has() {
  [[ -f $LEDGER ]] && grep -qxF "$1"$'\t'"$2" "$LEDGER"
}

ledger_add() {
  ledger_has "$1" "$2" || printf '%s\t%s\n' "$1" "$2" >>"$LEDGER"
}

# まだ無いパスを作る前に呼ぶ: 無ければ台帳に載せる（あるものは利用者のものなので触らない）
claim_path() {
  local kind=$1 path=$2
  if [[ ! -e $path && ! -L $path ]]; then ledger_add "$kind" "$path"; fi
}

# 中に何かが作られるディレクトリ: 無ければ丸ごと、あれば今の中身（下の階層まで）の一覧を覚えて、
# down で増えたものだけを消す
claim_contents() {
  local dir=$1
  if [[ ! -e $dir ]]; then
    ledger_add dir "$dir"
    return
  fi
  ledger_has new-in "$dir" && return 0
  mkdir -p "$BACKUP_DIR"
  find "$dir" -xdev -mindepth 1 -printf '%P\n' >"$BACKUP_DIR/${dir//\//%}.list"
  ledger_add new-in "$dir"
}

# Docker がこちらの代わりに作るディレクトリ（ノードのバインドマウントの元、コンテナの shim のソケットの置き場）:
# 無ければ台帳に載せ、down で空なら消す。中身は Docker のほかのコンテナのものでありうるので、丸ごとは消さない
claim_empty_dir() {
  local path=$1
  if [[ ! -e $path && ! -L $path ]]; then ledger_add empty "$path"; fi
}

# 書き換える前に呼ぶ: 最初の 1 度だけ元を保存する
back_up() {
  local path=$1 saved
  ledger_has backup "$path" && return 0
  saved=$BACKUP_DIR/${path//\//%}
  mkdir -p "$BACKUP_DIR"
  if [[ -e $path ]]; then
    cp -a "$path" "$saved"
  else
    : >"$saved.absent"
  fi
  ledger_add backup "$path"
}

# 台帳を新しいものから戻す
undo_ledger() {
  [[ -f $LEDGER ]] || return 0
  local kind path saved
  while IFS=$'\t' read -r kind path; do
    case $kind in
      file) rm -f "$path" ;;
      dir) rm -rf --one-file-system "$path" ;;
      empty) rmdir "$path" 2>/dev/null || true ;;
      new-in)
        # 浅いものから: 新しいディレクトリを消せば、その下の新しいものも消える
        local entry
        while IFS= read -r entry; do
          grep -qxF -- "$entry" "$BACKUP_DIR/${path//\//%}.list" || rm -rf --one-file-system "${path:?}/$entry"
        done < <(find "$path" -xdev -mindepth 1 -printf '%P\n' 2>/dev/null | LC_ALL=C sort)
        ;;
      backup)
        saved=$BACKUP_DIR/${path//\//%}
        if [[ -e $saved ]]; then
          rm -rf "$path"
          cp -a "$saved" "$path"
        else
          rm -rf "$path"
        fi
        ;;
    esac
  done < <(tac "$LEDGER")
  rm -f "$LEDGER"
  rm -rf "$BACKUP_DIR"
}
