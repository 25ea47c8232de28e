# shellcheck shell=bash
# クラスタのイメージ: レジストリからは何も pull できないので、ビルドしたバイナリから
# kubeadm と minikube のアドオンが期待する名前の OCI イメージ（tar）を作り、containerd へ入れる。
# Docker は使わない（Docker のイメージを増やさない）。tar は版ごとに $IMAGE_DIR にキャッシュする。

IMAGE_RECIPE=2
METRICS_SERVER_IMAGE=metrics-server/metrics-server:$METRICS_SERVER_VERSION
METRICS_SERVER_REGISTRY=registry.k8s.io
# テストのクラスタにだけ入れる NetworkPolicy の実装（ローカルでビルドしたことが名前で分かるように）
KUBE_ROUTER_IMAGE=localhost/mii-minikube/kube-router:$KUBE_ROUTER_VERSION

# ファイル 1 つの sha256
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ディレクトリを 1 レイヤにした OCI イメージの tar を作る（再現可能: 時刻と所有者を固定）
#   oci_archive OUT NAME ROOTFS CONFIG
# CONFIG はイメージ設定の "config" の中身（JSON のオブジェクト）
oci_archive() {
  local out=$1 name=$2 rootfs=$3 config=$4 work arch
  work=$(mktemp -d "$IMAGE_DIR/.oci.XXXXXX")
  arch=$(go env GOARCH 2>/dev/null || dpkg --print-architecture)
  local blobs=$work/oci/blobs/sha256
  mkdir -p "$blobs"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  local layer layer_size cfg cfg_size manifest manifest_size
  layer=$(sha256_of "$work/layer.tar")
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$blobs/$layer"
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$config" "$layer" >"$work/config.json"
  cfg=$(sha256_of "$work/config.json")
  cfg_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$blobs/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$cfg_size" "$layer" "$layer_size" >"$work/manifest.json"
  manifest=$(sha256_of "$work/manifest.json")
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$blobs/$manifest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$arch" "$name" "${name##*:}" >"$work/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

# 静的バイナリ 1 つのイメージ（FROM scratch と同じ）
#   binary_image OUT NAME BINARY PATH_IN_IMAGE ENTRYPOINT_JSON
binary_image() {
  local out=$1 name=$2 binary=$3 target=$4 entrypoint=$5 rootfs
  rootfs=$(mktemp -d "$IMAGE_DIR/.rootfs.XXXXXX")
  install -D -m 0755 "$binary" "$rootfs$target"
  mkdir -m 1777 "$rootfs/tmp"
  oci_archive "$out" "$name" "$rootfs" \
    "{\"Env\":[\"PATH=/usr/local/bin:/usr/bin:/bin\"],\"Entrypoint\":$entrypoint,\"WorkingDir\":\"/\"}"
  rm -rf "$rootfs"
}

# kube-proxy と kube-router は iptables・ipset・conntrack を呼ぶので、それらを持つ最小の Debian
# （debootstrap）を土台にする。土台は 1 度だけ作って tar で置いておく
DEBIAN_PACKAGES=iptables,ipset,conntrack,netbase

debian_rootfs() {
  local dir=$1 cache=$IMAGE_DIR/debian-rootfs.r$IMAGE_RECIPE.tar suite
  if [[ ! -f $cache ]]; then
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" \
      "$suite" "$dir" "${MII_MINIKUBE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc "$dir"/usr/share/man
    tar --numeric-owner -C "$dir" -cf "$cache.tmp" .
    mv -f "$cache.tmp" "$cache"
    return
  fi
  tar --numeric-owner -C "$dir" -xf "$cache"
}

# 土台の Debian にバイナリ 1 つを足したイメージ
#   debian_image OUT NAME BINARY
debian_image() {
  local out=$1 name=$2 binary=$3 rootfs
  rootfs=$(mktemp -d "$IMAGE_DIR/.rootfs.XXXXXX")
  debian_rootfs "$rootfs"
  install -D -m 0755 "$binary" "$rootfs/usr/local/bin/$(basename "$binary")"
  oci_archive "$out" "$name" "$rootfs" \
    '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"}'
  rm -rf "$rootfs"
}

# kubeadm が使うイメージの名前（registry.k8s.io/kube-apiserver:v1.34.12 など）を 1 行ずつ
kubeadm_images() {
  "$BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null
}

# 名前からイメージを作る。作り方の分からない名前は失敗にする（kubeadm の版と modules/ の版のずれ）
make_image() {
  local name=$1 out=$2 repo=${1%:*} tag=${1##*:}
  case ${repo##*/} in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      binary_image "$out" "$name" "$BIN/${repo##*/}" "/usr/local/bin/${repo##*/}" "[\"/usr/local/bin/${repo##*/}\"]" ;;
    kube-proxy) debian_image "$out" "$name" "$BIN/kube-proxy" ;;
    kube-router) debian_image "$out" "$name" "$BIN/kube-router" ;;
    etcd)
      [[ ${tag%%-*} == "${ETCD_VERSION#v}" ]] ||
        { echo "kubeadm wants $name but modules/etcd builds $ETCD_VERSION" >&2; return 1; }
      binary_image "$out" "$name" "$BIN/etcd" /usr/local/bin/etcd '["/usr/local/bin/etcd"]' ;;
    coredns)
      [[ $tag == "$COREDNS_VERSION" ]] ||
        { echo "kubeadm wants $name but modules/coredns builds $COREDNS_VERSION" >&2; return 1; }
      binary_image "$out" "$name" "$BIN/coredns" /coredns '["/coredns"]' ;;
    pause)
      [[ $tag == "$(<"$BIN/.pause.tag")" ]] ||
        { echo "kubeadm wants $name but the kubernetes module's pause.c is $(<"$BIN/.pause.tag")" >&2; return 1; }
      binary_image "$out" "$name" "$BIN/pause" /pause '["/pause"]' ;;
    metrics-server)
      binary_image "$out" "$name" "$BIN/metrics-server" /metrics-server '["/metrics-server"]' ;;
    *)
      echo "no recipe for the image $name" >&2
      return 1 ;;
  esac
}

# 作るイメージの一覧: kubeadm のもの、metrics-server アドオンのもの、（none ドライバーだけ）kube-router
cluster_images() {
  kubeadm_images
  echo "$METRICS_SERVER_REGISTRY/$METRICS_SERVER_IMAGE"
  [[ $DRIVER == docker ]] || echo "$KUBE_ROUTER_IMAGE"
}

# イメージの中身になるバイナリ（これより古い tar は作り直す）
source_of() {
  local repo=${1%:*}
  case ${repo##*/} in
    coredns | etcd | pause | metrics-server | kube-*) echo "$BIN/${repo##*/}" ;;
    *) echo /dev/null ;;
  esac
}

archive_of() {
  echo "$IMAGE_DIR/$(echo "$1" | tr '/:' '__').r$IMAGE_RECIPE.tar"
}

# 同じイメージの `docker save` の形の tar（docker ドライバー: minikube はノードで docker load する）
docker_archive_of() {
  echo "$IMAGE_DIR/$(echo "$1" | tr '/:' '__').r$IMAGE_RECIPE.docker.tar"
}

# OCI の tar（oci_archive）を `docker load` の形（manifest.json と、設定とレイヤーのファイル）にする。
# ノードの Docker 20.10 は OCI のレイアウトを読まない。中身（設定とレイヤー）は同じバイト列のまま
#   docker_archive OUT NAME OCI_TAR
docker_archive() {
  local out=$1 name=$2 oci=$3 work manifest config layers
  work=$(mktemp -d "$IMAGE_DIR/.docker.XXXXXX")
  tar -C "$work" -xf "$oci"
  manifest=$(jq -r '.manifests[0].digest | sub("^sha256:"; "")' "$work/index.json")
  config=$(jq -r '.config.digest | sub("^sha256:"; "")' "$work/blobs/sha256/$manifest")
  layers=$(jq -c '[.layers[].digest | sub("^sha256:"; "blobs/sha256/")]' "$work/blobs/sha256/$manifest")
  jq -n -c --arg config "blobs/sha256/$config" --arg name "$name" --argjson layers "$layers" \
    '[{Config: $config, RepoTags: [$name], Layers: $layers}]' >"$work/manifest.json"
  rm -f "$work/index.json" "$work/oci-layout" "$work/blobs/sha256/$manifest"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.tmp" manifest.json blobs
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

# 足りない tar を作る
build_images() {
  mkdir -p "$IMAGE_DIR"
  local name out made=0
  while IFS= read -r name; do
    [[ -n $name ]] || continue
    out=$(archive_of "$name")
    [[ -f $out && $out -nt $(source_of "$name") ]] && continue
    step "images: building $name"
    run_step "image-$(basename "${name%:*}")" 900 make_image "$name" "$out"
    made=$((made + 1))
  done < <(cluster_images)
  if [[ $DRIVER == docker ]]; then
    while IFS= read -r name; do
      [[ -n $name ]] || continue
      out=$(docker_archive_of "$name")
      [[ -f $out && $out -nt $(archive_of "$name") ]] && continue
      run_step "image-$(basename "${name%:*}")" 300 docker_archive "$out" "$name" "$(archive_of "$name")"
      made=$((made + 1))
    done < <(cluster_images)
  fi
  ((made > 0)) || step "images: cached in $IMAGE_DIR"
}

ctr_k8s() {
  ctr --address "$CONTAINERD_SOCK" --connect-timeout 5s --timeout 300s --namespace k8s.io "$@"
}

# containerd に無いイメージを入れる（minikube start の前。none ドライバーは pull を試みるだけなので）
import_images() {
  local name have n=0
  have=$(ctr_k8s images ls -q)
  while IFS= read -r name; do
    [[ -n $name ]] || continue
    grep -qxF "$name" <<<"$have" && continue
    run_step import-images 300 ctr_k8s images import "$(archive_of "$name")"
    n=$((n + 1))
  done < <(cluster_images)
  step "images: $n imported into containerd ($(cluster_images | wc -l) needed)"
}
