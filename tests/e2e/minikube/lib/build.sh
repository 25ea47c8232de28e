# shellcheck shell=bash
# ビルド: Go モジュールプロキシの公式ソースから、ラッパーモジュール（modules/）ごとに作る。
# 結果は $BIN に置き、入力（go.mod・go.sum・tools.go とレシピの版）のスタンプが同じなら作り直さない。

# ビルド方法を変えたらこの値を上げる（キャッシュ済みのバイナリを作り直させる）
BUILD_RECIPE=1

# 作るもの: 名前 → 出来上がるファイル
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)
declare -A BUILD_OUTPUTS=(
  [kubernetes]="${K8S_COMMANDS[*]} metrics-server"
  [etcd]=etcd
  [minikube]=minikube
  [crictl]=crictl
  [coredns]=coredns
  [kube-router]=kube-router
  [pause]=pause
  [cri-dockerd]=cri-dockerd
)
# 名前 → ラッパーモジュールのディレクトリ
declare -A BUILD_MODULES=(
  [kubernetes]=kubernetes [etcd]=etcd [minikube]=minikube [crictl]=cri-tools [coredns]=coredns
  [kube-router]=kube-router [pause]=kubernetes [cri-dockerd]=cri-dockerd
)
# ドライバーごとに要るもの: none は NetworkPolicy を効かせる kube-router、docker はノードの cri-dockerd
if [[ $DRIVER == docker ]]; then
  BUILD_ORDER=(kubernetes etcd minikube crictl coredns pause cri-dockerd)
else
  BUILD_ORDER=(kubernetes etcd minikube crictl coredns kube-router pause)
fi

go_env() {
  command -v go >/dev/null || die "the Go toolchain is missing (go is not on PATH); it is needed to build Kubernetes and minikube"
  export GOMODCACHE=$GO_CACHE_ROOT/mod GOCACHE=$GO_CACHE_ROOT/build GOPATH=$GO_CACHE_ROOT/path
  export GOFLAGS="-mod=readonly -buildvcs=false -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0
}

# go の各コマンドに上限時間をつける（ネットワークが止まっても up が終わるように）
gocmd() {
  timeout -k 30 "${MII_MINIKUBE_BUILD_TIMEOUT:-3600}" nice -n 10 go "$@"
}

stamp_of() {
  local dir=$MODULES/${BUILD_MODULES[$1]}
  { echo "recipe=$BUILD_RECIPE target=$1"; cat "$dir"/go.mod "$dir"/go.sum "$dir"/tools.go; } | sha256sum | cut -d' ' -f1
}

built() {
  local name=$1 file
  [[ -f $BIN/.$name.stamp && $(<"$BIN/.$name.stamp") == "$(stamp_of "$name")" ]] || return 1
  for file in ${BUILD_OUTPUTS[$name]}; do [[ -x $BIN/$file ]] || return 1; done
}

# ラッパーモジュールを作業場所へ写し、そこで go を動かす（リポジトリに何も書かない）
module_workdir() {
  local src=$VERSION_DIR/src/$1
  rm -rf "$src"
  mkdir -p "$src"
  cp "$MODULES/${BUILD_MODULES[$1]}"/{go.mod,go.sum,tools.go} "$src/"
  echo "$src"
}

# -X で埋める Kubernetes の版情報（hack/lib/version.sh と同じ変数）。kubeadm は自分の版を
# --kubernetes-version と比べるので、空のままにはできない
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
  local src out info cmds=() c
  src=$(module_workdir kubernetes)
  out=$VERSION_DIR/tmp/kubernetes
  mkdir -p "$out"
  cd "$src" || return
  gocmd mod download k8s.io/kubernetes
  info=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.info
  for c in "${K8S_COMMANDS[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$c"); done
  # 1 回の go build にまとめると、共通のパッケージを 1 度だけコンパイルする
  gocmd build -ldflags "$(k8s_ldflags "$info")" -o "$out/" "${cmds[@]}"
  # metrics-server も同じモジュール（k8s.io/* は同じ版）で作り、コンパイル済みのパッケージを共有する
  gocmd build -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.gitTreeState=clean" \
    -o "$out/" sigs.k8s.io/metrics-server/cmd/metrics-server
  mv -f "$out"/* "$BIN/"
}

build_etcd() {
  local src
  src=$(module_workdir etcd)
  cd "$src" || return
  gocmd build -ldflags "-s -w" -o "$VERSION_DIR/tmp/etcd" go.etcd.io/etcd/server/v3
  mv -f "$VERSION_DIR/tmp/etcd" "$BIN/etcd"
}

# minikube の Makefile と同じ版の埋め込み（ISO とストレージプロビジョナーの版は none ドライバーでは使わない）
build_minikube() {
  local src pkg=k8s.io/minikube/pkg/version
  src=$(module_workdir minikube)
  cd "$src" || return
  # libvirt_dlopen: KVM ドライバーが libvirt を実行時に開く（ビルドに libvirt が要らない）。
  # libvirt の Go バインディングが cgo を使うので、このビルドだけ cgo を有効にする
  CGO_ENABLED=1 gocmd build -tags libvirt_dlopen \
    -ldflags "-s -w -X $pkg.version=$MINIKUBE_VERSION -X $pkg.isoVersion=v1.38.0 -X $pkg.storageProvisionerVersion=v5" \
    -o "$VERSION_DIR/tmp/minikube" k8s.io/minikube/cmd/minikube
  mv -f "$VERSION_DIR/tmp/minikube" "$BIN/minikube"
}

build_crictl() {
  local src
  src=$(module_workdir crictl)
  cd "$src" || return
  gocmd build -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    -o "$VERSION_DIR/tmp/crictl" sigs.k8s.io/cri-tools/cmd/crictl
  mv -f "$VERSION_DIR/tmp/crictl" "$BIN/crictl"
}

build_coredns() {
  local src
  src=$(module_workdir coredns)
  cd "$src" || return
  gocmd build -ldflags "-s -w" -o "$VERSION_DIR/tmp/coredns" github.com/coredns/coredns
  mv -f "$VERSION_DIR/tmp/coredns" "$BIN/coredns"
}

# kube-router: テストのクラスタで NetworkPolicy を実際に効かせる（--run-firewall だけを使う）
build_kube_router() {
  local src
  src=$(module_workdir kube-router)
  cd "$src" || return
  gocmd build -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    -o "$VERSION_DIR/tmp/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
  mv -f "$VERSION_DIR/tmp/kube-router" "$BIN/kube-router"
}

# cri-dockerd: docker ドライバーのノードで kubelet（CRI）と dockerd をつなぐ
build_cri_dockerd() {
  local src pkg=github.com/Mirantis/cri-dockerd/cmd/version
  src=$(module_workdir cri-dockerd)
  cd "$src" || return
  gocmd build -ldflags "-s -w -X $pkg.Version=${CRI_DOCKERD_VERSION#v} -X $pkg.GitCommit=mii" \
    -o "$VERSION_DIR/tmp/cri-dockerd" github.com/Mirantis/cri-dockerd
  mv -f "$VERSION_DIR/tmp/cri-dockerd" "$BIN/cri-dockerd"
}

# モジュールキャッシュの中のモジュールのソース（無ければダウンロードする）。ビルドしたモジュールの
# ビルドしないファイル（minikube の kicbase の entrypoint、cri-dockerd の systemd のユニット）を読む
#   module_dir MODULE VERSION
module_dir() {
  local path=$1 version=$2 dir
  dir=$GO_CACHE_ROOT/mod/$(printf '%s' "$path" | sed 's/[A-Z]/!\L&/g')@$version
  if [[ ! -d $dir ]]; then
    (go_env && cd "$(mktemp -d)" && GOFLAGS=-mod=mod gocmd mod download "$path@$version") >&2 || return 1
  fi
  echo "$dir"
}

# pause: k8s.io/kubernetes モジュールにある pause.c を静的にコンパイルする
build_pause() {
  local src kdir tag
  src=$(module_workdir pause)
  kdir=$(cd "$src" && gocmd mod download -json k8s.io/kubernetes | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [[ -f $kdir/build/pause/linux/pause.c ]] || { echo "pause.c not found in $kdir" >&2; return 1; }
  tag=$(sed -n 's/^TAG ?= *//p' "$kdir/build/pause/Makefile")
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-mii" -o "$VERSION_DIR/tmp/pause" "$kdir/build/pause/linux/pause.c"
  strip "$VERSION_DIR/tmp/pause"
  echo "$tag" >"$BIN/.pause.tag"
  mv -f "$VERSION_DIR/tmp/pause" "$BIN/pause"
}

# 足りないものだけビルドする。2 つまで同時に動かし、1 分ごとに進み具合を 1 行出す
build_all() {
  mkdir -p "$BIN" "$VERSION_DIR/tmp"
  local pending=() name
  for name in "${BUILD_ORDER[@]}"; do
    if built "$name"; then
      step "build: $name cached"
    else
      pending+=("$name")
    fi
  done
  ((${#pending[@]} > 0)) || return 0
  go_env
  local -A pids=() started=()
  local last=$SECONDS status running
  while ((${#pending[@]} > 0 || ${#pids[@]} > 0)); do
    while ((${#pids[@]} < 2 && ${#pending[@]} > 0)); do
      name=${pending[0]}
      pending=("${pending[@]:1}")
      step "build: $name started (log: $LOG_DIR/build-$name.log)"
      : >"$LOG_DIR/build-$name.log"
      ("build_${name//-/_}") >>"$LOG_DIR/build-$name.log" 2>&1 9>&- &
      pids[$name]=$!
      started[$name]=$SECONDS
    done
    for name in "${!pids[@]}"; do
      kill -0 "${pids[$name]}" 2>/dev/null && continue
      status=0
      wait "${pids[$name]}" || status=$?
      unset "pids[$name]"
      ((status == 0)) || die "build of $name failed (exit $status); see $LOG_DIR/build-$name.log"
      stamp_of "$name" >"$BIN/.$name.stamp"
      step "build: $name done in $((SECONDS - started[$name]))s"
    done
    if ((SECONDS - last >= 60 && ${#pids[@]} > 0)); then
      running="${!pids[*]}"
      step "build: still compiling $running"
      last=$SECONDS
    fi
    sleep 2
  done
  rm -rf "$VERSION_DIR/tmp"
}
