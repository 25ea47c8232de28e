# shellcheck shell=bash
# ホストの準備: パッケージ、systemctl と crictl、containerd（設定と起動スクリプト）、CNI、
# ローカルのレジストリ、minikube のキャッシュ。加えたものはすべて台帳（common.sh）に載せる。

REGISTRY_PIDFILE=$STATE_DIR/registry.pid

ensure_packages() {
  local missing=() cmd pkg plugin
  for pkg in containerd:containerd runc:runc conntrack:conntrack iptables:iptables sudo:sudo socat:socat \
    docker-registry:docker-registry debootstrap:debootstrap curl:curl gcc:gcc start-stop-daemon:dpkg ipset:ipset \
    jq:jq; do
    cmd=${pkg%%:*}
    command -v "$cmd" >/dev/null || missing+=("${pkg#*:}")
  done
  for plugin in bridge host-local portmap loopback firewall; do
    [[ -x $CNI_BIN_DIR/$plugin ]] || { missing+=(containernetworking-plugins); break; }
  done
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
  } >>"$LOG_DIR/apt.log" 2>&1 9>&- || die "apt-get install ${missing[*]} failed; see $LOG_DIR/apt.log"
}

# テンプレートの @NAME@ を値に置き換えて書く
render() {
  local template=$TEMPLATES/$1 target=$2 mode=$3
  sed -e "s|@LOG_DIR@|$LOG_DIR|g" -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@REGISTRY_ADDR@|$REGISTRY_ADDR|g" \
    "$template" >"$target.tmp"
  chmod "$mode" "$target.tmp"
  mv -f "$target.tmp" "$target"
}

# 作るファイルを台帳に載せてから書く（利用者の同名のファイルがあれば保存して戻す）
place_file() {
  local target=$1
  if [[ -e $target ]]; then back_up "$target"; else ledger_add file "$target"; fi
}

# sudo の secure_path（/usr/local/sbin:/usr/local/bin が先）から見つかる場所に置く
install_tools() {
  place_file /usr/local/sbin/systemctl
  render systemctl /usr/local/sbin/systemctl 0755
  place_file /usr/local/bin/crictl
  install -m 0755 "$BIN/crictl" /usr/local/bin/crictl
  # minikube は CNI プラグインを /opt/cni/bin に探す（Debian は /usr/lib/cni に入れる）
  if [[ ! -e /opt/cni/bin ]]; then
    claim_path dir /opt/cni
    mkdir -p /opt/cni
    ln -s "$CNI_BIN_DIR" /opt/cni/bin
  fi
  step "host: systemctl shim, crictl $CRICTL_VERSION and /opt/cni/bin in place"
}

# containerd の設定: 既定の設定に 3 か所だけ手を入れる
#   bin_dir                  Debian の CNI プラグインの場所
#   restrict_oom_score_adj   このホストには CAP_SYS_RESOURCE が無い。minikube は `restrict_oom_score_adj = `
#                            の行を false に書き換えるので、空白の無い形で true を書き、その sed に掛からないようにする
#   config_path              ローカルのレジストリへ平文 HTTP で pull する（hosts.toml）
write_containerd_config() {
  back_up "$CONTAINERD_CONFIG"
  claim_path dir /etc/containerd/certs.d
  mkdir -p "/etc/containerd/certs.d/$REGISTRY_ADDR"
  render hosts.toml "/etc/containerd/certs.d/$REGISTRY_ADDR/hosts.toml" 0644
  containerd config default |
    sed -E -e "s|^( *)bin_dir = .*$|\1bin_dir = \"$CNI_BIN_DIR\"|" \
      -e 's|^( *)restrict_oom_score_adj = .*$|\1restrict_oom_score_adj=true|' \
      -e 's|^( *)config_path = .*$|\1config_path = "/etc/containerd/certs.d"|' >"$CONTAINERD_CONFIG.tmp"
  grep -q '^ *restrict_oom_score_adj=true$' "$CONTAINERD_CONFIG.tmp" ||
    die "containerd config default has no restrict_oom_score_adj line to set (containerd $(containerd --version))"
  mv -f "$CONTAINERD_CONFIG.tmp" "$CONTAINERD_CONFIG"
}

# containerd と minikube（kubeadm・kubelet）が作る場所を、作られる前に台帳へ載せる（down で消す）
claim_host_paths() {
  local path
  for path in /var/lib/containerd /run/containerd /opt/containerd \
    /etc/kubernetes /var/lib/minikube /var/lib/kubelet /var/lib/cni /etc/cni /etc/cni/net.d /var/lib/etcd \
    /var/log/pods /var/log/containers /data /tmp/hostpath-provisioner /tmp/hostpath_pv /var/tmp/minikube \
    /etc/ssl/certs /usr/share/ca-certificates /etc/systemd/system/kubelet.service.d; do
    claim_contents "$path"
  done
  # /usr/lib/modules と /run/xtables.lock は kube-proxy の hostPath（無ければ作られる）
  claim_contents /usr/lib/modules
  for path in /etc/crictl.yaml /etc/init.d/kubelet /run/kubelet.pid /run/xtables.lock \
    /etc/systemd/system/kubelet.service /lib/systemd/system/kubelet.service; do
    claim_path file "$path"
  done
  back_up /etc/hosts
}

containerd_running() {
  ctr --address "$CONTAINERD_SOCK" --connect-timeout 2s version
}

start_containerd() {
  place_file /etc/init.d/containerd
  render containerd.init /etc/init.d/containerd 0755
  write_containerd_config
  run_step containerd 120 service containerd restart
  containerd_running >/dev/null 2>&1 || die "containerd does not answer on $CONTAINERD_SOCK; see $LOG_DIR/containerd.log"
  step "containerd: running on $CONTAINERD_SOCK ($(containerd --version | awk '{print $3}'))"
}

registry_running() {
  curl -fsS --max-time 3 "http://$REGISTRY_ADDR/v2/"
}

start_registry() {
  if registry_running >/dev/null 2>&1; then
    step "registry: answering on http://$REGISTRY_ADDR"
    return
  fi
  mkdir -p "$STATE_DIR/registry"
  render registry.yml "$STATE_DIR/registry.yml" 0644
  # setsid: 呼び出した端末や CI のプロセスグループのシグナルを受けないようにする
  setsid docker-registry serve "$STATE_DIR/registry.yml" >>"$LOG_DIR/registry.log" 2>&1 </dev/null 9>&- &
  echo $! >"$REGISTRY_PIDFILE"
  wait_until 30 "the registry on http://$REGISTRY_ADDR" "$LOG_DIR/registry.log" registry_running
  step "registry: started on http://$REGISTRY_ADDR (log $LOG_DIR/registry.log)"
}

stop_registry() {
  [[ -f $REGISTRY_PIDFILE ]] || return 0
  local pid
  pid=$(<"$REGISTRY_PIDFILE")
  if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */docker-registry ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    step "registry: stopped (pid $pid)"
  fi
  rm -f "$REGISTRY_PIDFILE"
  rm -rf "$STATE_DIR/registry" "$STATE_DIR/registry.yml"
}

# minikube は kubeadm・kubelet・kubectl をこのキャッシュから使う（無ければダウンロードしようとする）
seed_minikube_cache() {
  local arch cache file
  arch=$(go env GOARCH 2>/dev/null || dpkg --print-architecture)
  cache=$MINIKUBE_HOME_DIR/.minikube/cache/linux/$arch/$K8S_VERSION
  mkdir -p "$cache"
  for file in kubeadm kubelet kubectl; do
    cmp -s "$BIN/$file" "$cache/$file" || install -m 0755 "$BIN/$file" "$cache/$file"
  done
}

# down の後に元どおりかを確かめるための、ホストの状態の要約（1 行 1 件、並べ替え済み）
machine_state() {
  {
    # このスクリプトと minikube が触る場所のファイル
    find /etc /opt /usr/local/bin /usr/local/sbin /var/lib /run -xdev -maxdepth 3 \
      \( -path /var/lib/docker -o -path /run/docker -o -path /var/lib/apt -o -path /var/lib/dpkg \
      -o -path /var/lib/dhcp -o -path /run/user -o -path /var/lib/systemd -o -path "$STATE_DIR" \
      -o -path /var/lib/mii-e2e -o -path /run/mii-e2e -o -path /var/lib/containers -o -path /run/netns \) -prune \
      -o -print 2>/dev/null | sed 's/^/path /' || true
    find /usr/lib -maxdepth 1 -name modules | sed 's/^/path /' || true
    ipset list -n 2>/dev/null | sed 's/^/ipset /' || true
    local file
    for file in /etc/hosts "$CONTAINERD_CONFIG" /etc/resolv.conf; do
      if [[ -f $file ]]; then echo "content $file $(sha256_of "$file")"; fi
    done
    # iptables のチェーンと、Docker 以外のルール
    iptables-save 2>/dev/null | sed -n 's/^\(:[^ ]*\).*/chain \1/p' || true
    iptables-save 2>/dev/null | grep -E -- '-[jg] (KUBE|CNI)' | sed 's/^/rule /' || true
    ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); if ($2 !~ /^veth/) print "link " $2}'
    awk '{print "mount " $5}' /proc/self/mountinfo | grep -v -E ' /(var/lib/docker|run/docker)/' || true
    for file in "${SAVED_SYSCTLS[@]}"; do
      echo "sysctl $file=$(sysctl -n "$file" 2>/dev/null)"
    done
    # cgroup v1 の階層（コントローラの組）。docker ドライバーのノードは新しい階層を作ることがある
    awk -F: '$1 != 0 && $2 != "" {print "cgroup-hierarchy " $2}' /proc/self/cgroup 2>/dev/null || true
    local comm
    for comm in kubelet kube-apiserver kube-controller kube-scheduler kube-proxy etcd coredns metrics-server \
      docker-registry containerd-shim; do
      if pgrep -x "$comm" >/dev/null; then echo "process $comm"; fi
    done
    if pgrep -f "containerd --config $CONTAINERD_CONFIG" >/dev/null; then echo "process containerd (minikube)"; fi
    if docker info >/dev/null 2>&1; then
      echo "docker answers"
      # docker ドライバー: dockerd の既定のランタイム、ネットワーク、minikube のノードのコンテナとボリューム
      echo "docker default-runtime $(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)"
      docker network ls --format '{{.Name}}' 2>/dev/null | sed 's/^/docker network /' || true
      docker ps -a --filter label=created_by.minikube.sigs.k8s.io=true --format '{{.Names}}' 2>/dev/null |
        sed 's/^/docker minikube-node /' || true
      docker volume ls --filter label=created_by.minikube.sigs.k8s.io=true --format '{{.Name}}' 2>/dev/null |
        sed 's/^/docker minikube-volume /' || true
    fi
  } | LC_ALL=C sort -u
}
