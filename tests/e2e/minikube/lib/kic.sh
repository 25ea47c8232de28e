# shellcheck shell=bash
# docker ドライバー（minikube の「kic」: ノードは特権コンテナ）: ノードのイメージ、このホストの dockerd への
# runc の包み、minikube のキャッシュ、起動と後片付け。
#
# ノードのイメージは minikube の deploy/kicbase/Dockerfile と同じものを、レジストリを使わずに作る:
# Debian bookworm の debootstrap（trixie の systemd 257 は cgroup v1 のホストで起動しない）に、Dockerfile が
# 入れる Debian のパッケージ（docker.io・containerd・runc・CNI プラグインを含む）、Go モジュールプロキシから
# ビルドした cri-dockerd と crictl、minikube のモジュールにある entrypoint を足し、Dockerfile と同じ設定をする。

# ノードに入れる Debian のパッケージ（kicbase の Dockerfile の clean-install の並びから、使うものを）
NODE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,iproute2,ethtool,socat,util-linux,mount,ebtables,kmod
NODE_PACKAGES+=,libseccomp2,pigz,ca-certificates,curl,rsync,sudo,openssh-server,lz4,iputils-ping,netcat-openbsd
NODE_PACKAGES+=,procps,jq,docker.io,containerd,runc,containernetworking-plugins
NODE_SUITE=bookworm
# 作り方を変えたらこの値を上げる（キャッシュしたノードのイメージを作り直させる）
NODE_RECIPE=1
NODE_REPOSITORY=localhost/mii-minikube/kicbase

# このホストの dockerd に登録する runc の包み（templates/mii-runc）
RUNC_WRAPPER=/usr/local/sbin/mii-runc
RUNC_RUNTIME=mii-runc
DOCKER_DAEMON_JSON=/etc/docker/daemon.json

# --- ノードのイメージ ------------------------------------------------------------------------

# イメージのタグ: 材料（レシピ・パッケージ・包み・ビルドした cri-dockerd と crictl・entrypoint）から決まる
node_image() {
  local entrypoint stamp
  entrypoint=$(module_dir k8s.io/minikube "$MINIKUBE_VERSION")/deploy/kicbase/entrypoint
  stamp=$({
    echo "recipe=$NODE_RECIPE suite=$NODE_SUITE packages=$NODE_PACKAGES"
    declare -f configure_node
    cat "$TEMPLATES/mii-runc" "$entrypoint" "$BIN/.cri-dockerd.stamp" "$BIN/.crictl.stamp"
  } | sha256sum | cut -c1-12)
  echo "$NODE_REPOSITORY:$MINIKUBE_VERSION-$stamp"
}

node_image_present() {
  docker image inspect "$1" >/dev/null 2>&1
}

# debootstrap した根に、kicbase の Dockerfile と同じ設定をする（chroot の中で）
#   configure_node ROOT
configure_node() {
  local root=$1 minikube cri
  minikube=$(module_dir k8s.io/minikube "$MINIKUBE_VERSION")/deploy/kicbase
  cri=$(module_dir github.com/Mirantis/cri-dockerd "$CRI_DOCKERD_VERSION")/packaging/systemd
  install -m 0755 "$minikube/entrypoint" "$root/usr/local/bin/entrypoint"
  install -m 0644 "$minikube/10-network-security.conf" "$minikube/11-tcp-mtu-probing.conf" "$root/etc/sysctl.d/"
  # systemd: コンテナで要らないユニットを外し、カーネルのログを読まず、tmpfiles の掃除を早める
  find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
    "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
    "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
  echo ReadKMsg=no >>"$root/etc/systemd/journald.conf"
  sed -i -e 's#OnBootSec=.*#OnBootSec=1min#' "$root/usr/lib/systemd/system/systemd-tmpfiles-clean.timer"
  chroot "$root" systemctl mask systemd-binfmt.service
  mkdir -p "$root/etc/kubernetes/manifests" "$root/kind"
  # minikube は /etc/hosts でコントロールプレーンを引く
  sed -i -re 's#^(hosts:\s*).*#\1files dns#' "$root/etc/nsswitch.conf"
  # Debian は dockerd を /usr/sbin に置く。minikube の docker.service は /usr/bin/dockerd を呼ぶ
  ln -sfn /usr/sbin/dockerd "$root/usr/bin/dockerd"
  # minikube は CNI プラグインを /opt/cni/bin に探す（Debian は /usr/lib/cni に置く）
  mkdir -p "$root/opt/cni"
  ln -sfn /usr/lib/cni "$root/opt/cni/bin"
  install -m 0755 "$BIN/cri-dockerd" "$root/usr/bin/cri-dockerd"
  install -m 0644 "$cri/cri-docker.socket" "$cri/cri-docker.service" "$root/usr/lib/systemd/system/"
  install -m 0755 "$BIN/crictl" "$root/usr/local/bin/crictl"
  # ノードの中の runc にも同じ包み（このホストの上限はノードの中でも同じ）: PATH で本物より先に見つかる
  install -m 0755 "$TEMPLATES/mii-runc" "$root/usr/local/sbin/runc"
  chroot "$root" systemctl enable docker.service ssh.service
  # minikube ssh（docker ユーザー、鍵だけ、パスワードなしの sudo）
  printf '%s\n' 'PubkeyAcceptedAlgorithms +ssh-rsa' 'HostkeyAlgorithms +ssh-rsa' 'PubkeyAuthentication yes' \
    'PasswordAuthentication no' >>"$root/etc/ssh/sshd_config"
  chroot "$root" groupadd -f docker
  chroot "$root" useradd -m -s /bin/bash -g docker -G sudo docker
  chroot "$root" sh -c "usermod -p '*' docker && passwd -u docker && passwd -d docker" >/dev/null
  echo '%sudo ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/20-passwordless-sudo"
  chmod 0440 "$root/etc/sudoers.d/20-passwordless-sudo"
  install -d -m 0700 "$root/home/docker/.ssh"
  chroot "$root" chown docker:docker /home/docker/.ssh
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  echo "kic! mii-minikube $MINIKUBE_VERSION (minikube.sh, Debian $NODE_SUITE)" >"$root/kic.txt"
}

# ノードのイメージを作り、ホストの Docker に入れる（同じ材料のイメージがあれば何もしない）
build_node_image() {
  local image root
  image=$(node_image)
  if node_image_present "$image"; then
    step "node image: $image present"
    return
  fi
  step "node image: building $image (debootstrap $NODE_SUITE; log: $LOG_DIR/node-image.log)"
  root=$(mktemp -d "$CACHE_DIR/.node.XXXXXX")
  run_step node-image 1200 make_node_image "$image" "$root"
  rm -rf --one-file-system "$root"
  step "node image: $image built"
}

make_node_image() {
  local image=$1 root=$2
  debootstrap --variant=minbase --include="$NODE_PACKAGES" "$NODE_SUITE" "$root" \
    "${MII_MINIKUBE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  configure_node "$root"
  # docker import は STOPSIGNAL を受け付けないので、取り込んだ根に小さなビルドで足す。
  # systemd は SIGTERM では止まらず、SIGRTMIN+3 で止まる
  tar --numeric-owner -C "$root" -c . |
    docker import -c 'ENV container=docker' -c 'EXPOSE 22' \
      -c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$image-rootfs"
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$image-rootfs" | docker build -q -t "$image" -
  docker image rm "$image-rootfs" >/dev/null
}

# --- このホストの dockerd: runc の包み ----------------------------------------------------------

# このホストが CAP_SYS_RESOURCE を持たないか（能力の上限の 24 番目のビット）
lacks_sys_resource() {
  local bounding
  bounding=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (((0x$bounding >> 24 & 1) == 0))
}

docker_default_runtime() {
  docker info --format '{{.DefaultRuntime}}' 2>/dev/null
}

dockerd_pid() {
  pgrep -xo dockerd
}

# dockerd に設定を読み直させ（SIGHUP。runtimes と default-runtime は再起動なしで変わる）、既定の
# ランタイムが WANT になるまで待つ
reload_dockerd() {
  local want=$1 pid
  pid=$(dockerd_pid) || die "no dockerd runs on this host (start Docker first)"
  kill -HUP "$pid"
  wait_until 30 "dockerd to use the $want runtime" /var/log/dockerd.log \
    test "$(docker_default_runtime)" = "$want"
}

# ノードのために Docker がホストに作る場所を、作られる前に台帳へ載せる（down で空なら消す）。
# 起動し直したばかりのホストには、どちらもまだ無い:
#   /usr/lib/modules    minikube はノードに /lib/modules を読み取り専用でバインドマウントする（元が無ければ Docker が作る）
#   /run/containerd/s   dockerd の containerd がコンテナごとの shim のソケットを置く（最初のコンテナが作る）
claim_docker_host_paths() {
  claim_empty_dir /usr/lib/modules
  claim_empty_dir /run/containerd
  claim_empty_dir /run/containerd/s
}

# CAP_SYS_RESOURCE の無いホストでだけ、包みを dockerd の既定のランタイムにする（down で戻す）
install_runtime_wrapper() {
  if ! lacks_sys_resource; then
    step "host: this host has CAP_SYS_RESOURCE; dockerd keeps its runtime"
    return
  fi
  place_file "$RUNC_WRAPPER"
  install -m 0755 "$TEMPLATES/mii-runc" "$RUNC_WRAPPER"
  mkdir -p "$(dirname "$DOCKER_DAEMON_JSON")"
  claim_path file "$DOCKER_DAEMON_JSON"
  back_up "$DOCKER_DAEMON_JSON"
  local current='{}'
  [[ ! -s $DOCKER_DAEMON_JSON ]] || current=$(<"$DOCKER_DAEMON_JSON")
  # 前の既定のランタイムを覚えておく（down はそれに戻してから、元の設定のファイルを戻す）
  jq -r '.["default-runtime"] // "runc"' <<<"$current" >"$STATE_DIR/default-runtime"
  jq --arg name "$RUNC_RUNTIME" --arg path "$RUNC_WRAPPER" \
    '.runtimes = ((.runtimes // {}) + {($name): {path: $path}}) | .["default-runtime"] = $name' \
    <<<"$current" >"$DOCKER_DAEMON_JSON.tmp"
  mv -f "$DOCKER_DAEMON_JSON.tmp" "$DOCKER_DAEMON_JSON"
  reload_dockerd "$RUNC_RUNTIME"
  step "host: dockerd runs containers through $RUNC_WRAPPER (no CAP_SYS_RESOURCE here; see docs/kubernetes.md)"
}

# 既定のランタイムを元に戻す。設定のファイルそのものは台帳が戻す（dockerd は読み直した内容を保つ）
restore_docker_runtime() {
  [[ -f $STATE_DIR/default-runtime ]] || return 0
  local previous
  previous=$(<"$STATE_DIR/default-runtime")
  if docker info >/dev/null 2>&1 && [[ $(docker_default_runtime) != "$previous" ]]; then
    local current='{}'
    [[ ! -s $DOCKER_DAEMON_JSON ]] || current=$(<"$DOCKER_DAEMON_JSON")
    jq --arg name "$previous" '.["default-runtime"] = $name' <<<"$current" >"$DOCKER_DAEMON_JSON.tmp"
    mv -f "$DOCKER_DAEMON_JSON.tmp" "$DOCKER_DAEMON_JSON"
    reload_dockerd "$previous"
    step "host: dockerd's default runtime is $previous again"
  fi
  rm -f "$STATE_DIR/default-runtime"
}

# --- minikube のキャッシュ -----------------------------------------------------------------

# minikube がノードへ写して docker load するイメージ（ファイルの名前は minikube の SanitizeCacheDir と同じ）
seed_image_cache() {
  local arch cache name file
  arch=$(go env GOARCH 2>/dev/null || dpkg --print-architecture)
  cache=$MINIKUBE_HOME_DIR/.minikube/cache/images/$arch
  while IFS= read -r name; do
    [[ -n $name ]] || continue
    file=$cache/${name//:/_}
    mkdir -p "$(dirname "$file")"
    cmp -s "$(docker_archive_of "$name")" "$file" || cp -f "$(docker_archive_of "$name")" "$file"
  done < <(cluster_images)
}

# --- 起動と停止 ----------------------------------------------------------------------------

start_minikube_docker() {
  seed_minikube_cache
  seed_image_cache
  local image
  image=$(node_image)
  local flags=(
    --driver=docker --container-runtime=docker --kubernetes-version="$K8S_VERSION"
    --base-image="$image" --preload=false
    # root で docker ドライバーを使うには --force が要る（CI は root で動く）
    --force
    --cpus=2 --memory=8192mb
    --extra-config=kubeadm.ignore-preflight-errors=SystemVerification
    --extra-config=apiserver.enable-aggregator-routing=true
    --wait=all --wait-timeout=6m0s
  )
  step "minikube: starting $MINIKUBE_VERSION (docker driver, profile $PROFILE, node image $image; log $LOG_DIR/minikube-start.log)"
  run_step minikube-start 900 mk start "${flags[@]}"
  run_step minikube-addons 300 mk addons disable storage-provisioner
  # metrics-server のイメージはノードに無い（pull できない）: キャッシュの tar を読み込んでから有効にする
  run_step minikube-addons 300 mk image load "$(docker_archive_of "$METRICS_SERVER_REGISTRY/$METRICS_SERVER_IMAGE")"
  run_step minikube-addons 300 mk addons enable metrics-server \
    --images="MetricsServer=$METRICS_SERVER_IMAGE" --registries="MetricsServer=$METRICS_SERVER_REGISTRY"
  step "minikube: started; waiting for the node and the metrics API"
  wait_until 300 "the node to be Ready" "$LOG_DIR/minikube-start.log" \
    kc wait --for=condition=Ready node --all --timeout=10s
  wait_until 300 "the metrics API (metrics-server addon)" "$LOG_DIR/minikube-start.log" node_metrics_served
}

# このプロファイルのノードのコンテナ（minikube が付けるラベルで探す）
node_containers() {
  docker ps -aq --no-trunc --filter "label=name.minikube.sigs.k8s.io=$PROFILE" 2>/dev/null || true
}

# minikube delete が残したもの（コンテナ・ボリューム・ネットワーク、ノードの kubelet が作った cgroup）を消す
cleanup_docker_objects() {
  local ids=$1 id dir
  docker info >/dev/null 2>&1 || return 0
  for id in $(node_containers); do docker rm -f -v "$id" >/dev/null 2>&1 || true; done
  docker volume rm -f "$PROFILE" >/dev/null 2>&1 || true
  if docker network inspect "$PROFILE" >/dev/null 2>&1; then docker network rm "$PROFILE" >/dev/null 2>&1 || true; fi
  # cgroup v1 で cgroupns の無いノードでは、kubelet の cgroup はノードの cgroup の下に作られ、
  # Docker はノードを消しても空でない cgroup を残す
  for id in $ids; do
    for dir in /sys/fs/cgroup/*/docker/"$id"; do
      [[ -d $dir ]] || continue
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
}

# cgroup v1 のホストでは、ノードの中の systemd が、ホストが使っていないコントローラ（hugetlb・perf_event・
# net_cls,net_prio など）を自分の名前空間に mount し、カーネルに新しい階層を作る。ノードを消しても階層は
# 残り、すべてのプロセスの /proc/PID/cgroup に現れる。ホストの containerd は mount の無い階層の cgroup を
# 読めず（"cannot find cgroup mount destination"）、docker stats が 0 を返すようになる。

# ホストに mount の無い cgroup v1 の階層（/proc/self/cgroup のコントローラの組）を 1 行ずつ
unmounted_hierarchies() {
  local controllers line mounted
  while IFS= read -r controllers; do
    [[ -n $controllers ]] || continue
    mounted=false
    while IFS= read -r line; do
      [[ ",$line," == *",$controllers,"* ]] && mounted=true
    done < <(awk '$(NF-2) == "cgroup" {print $NF}' /proc/self/mountinfo)
    $mounted || echo "$controllers"
  done < <(awk -F: '$1 != 0 && $2 != "" {print $2}' /proc/self/cgroup)
}

# そうした階層を一時的に mount し、子の cgroup を消して外す（子も mount も無い階層は、外したときに
# カーネルが消す）。ノードのコンテナの cgroup は runc が少し遅れて消すので、無くなるまで数回繰り返す
cleanup_cgroup_hierarchies() {
  local dir controllers left removed=()
  dir=$(mktemp -d /tmp/mii-cgroup.XXXXXX)
  for _ in $(seq 1 15); do
    left=$(unmounted_hierarchies)
    [[ -n $left ]] || break
    while IFS= read -r controllers; do
      mount -t cgroup -o "$controllers" none "$dir" 2>/dev/null || continue
      find "$dir" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
      umount "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
      [[ " ${removed[*]} " == *" $controllers "* ]] || removed+=("$controllers")
    done <<<"$left"
    sleep 1
  done
  rmdir "$dir" 2>/dev/null || true
  if ((${#removed[@]} > 0)); then
    step "host: removed the cgroup v1 hierarchies the node created: ${removed[*]}"
  fi
  left=$(unmounted_hierarchies)
  [[ -z $left ]] || step "host: could not remove the cgroup v1 hierarchies $(echo "$left" | tr '\n' ' ')"
}
