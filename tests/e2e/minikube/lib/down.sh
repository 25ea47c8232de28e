# shellcheck shell=bash
# 停止と後片付け: minikube delete が残すもの（動いたままのサンドボックス、CNI の設定とブリッジ、
# KUBE-*/CNI-* の iptables のチェーン、/etc/hosts の行、マウント、cgroup、sysctl）を消し、
# 台帳のとおりに戻し、up の前に取ったホストの要約と比べる。

POD_CIDR=10.244.0.0/16
# kubelet と kube-proxy が書き換える sysctl（up の前の値を保存し、down で戻す）。docker ドライバーの
# ノードは特権コンテナなので、その中の systemd-sysctl（Debian の既定の kernel.pid_max・fs.protected_*）も
# 名前空間に分かれていない値をホストごと書き換える
SAVED_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait
  kernel.pid_max fs.protected_fifos fs.protected_hardlinks fs.protected_regular fs.protected_symlinks)

save_sysctls() {
  [[ -f $STATE_DIR/sysctl.saved ]] && return 0
  local name value
  for name in "${SAVED_SYSCTLS[@]}"; do
    value=$(sysctl -n "$name" 2>/dev/null) && echo "$name=$value"
  done >"$STATE_DIR/sysctl.saved"
}

restore_sysctls() {
  [[ -f $STATE_DIR/sysctl.saved ]] || return 0
  local line
  while IFS= read -r line; do
    if [[ -n $line ]]; then sysctl -qw "$line" 2>/dev/null || true; fi
  done <"$STATE_DIR/sysctl.saved"
  rm -f "$STATE_DIR/sysctl.saved"
}

# このスクリプトの containerd のシム（コマンドラインにソケットのパスを持つもの）
our_shims() {
  local dir cmd
  for dir in /proc/[0-9]*; do
    cmd=$({ tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *containerd-shim* && $cmd == *"-address $CONTAINERD_SOCK "* ]] && echo "${dir#/proc/}"
  done
  return 0
}

# kubelet の cgroup（kubepods）にいるプロセス = Pod のコンテナのプロセス
pod_processes() {
  { find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -un
}

kill_pods() {
  local ids id
  if containerd_running >/dev/null 2>&1; then
    ids=$(ctr_k8s tasks ls -q 2>/dev/null || true)
    for id in $ids; do ctr_k8s tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do ctr_k8s tasks rm -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_k8s containers ls -q 2>/dev/null || true); do ctr_k8s containers rm "$id" >/dev/null 2>&1 || true; done
  fi
  local pids
  pids=$(pod_processes)
  # shellcheck disable=SC2086
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

# kubelet を止める。minikube delete は止められずに終わることがあり（"Kubernetes: Running"）、
# minikube の起動スクリプト（OpenRC 式）は kubelet を再起動し続けるラッパーの下で動かす
stop_kubelet() {
  if [[ -x /etc/init.d/kubelet ]]; then /etc/init.d/kubelet stop >/dev/null 2>&1 9>&- || true; fi
  pkill -KILL -f openrc-restart-wrapper.sh 2>/dev/null || true
  local dir exe pids=()
  for dir in /proc/[0-9]*; do
    exe=$(readlink "$dir/exe" 2>/dev/null) || continue
    [[ $exe == /var/lib/minikube/binaries/*/kubelet* ]] && pids+=("${dir#/proc/}")
  done
  ((${#pids[@]} > 0)) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  sleep 2
  kill -KILL "${pids[@]}" 2>/dev/null || true
  step "kubelet: stopped (pid ${pids[*]})"
}

stop_containerd() {
  if [[ -x /etc/init.d/containerd ]] && ledger_has file /etc/init.d/containerd; then
    /etc/init.d/containerd stop >>"$LOG_DIR/containerd.log" 2>&1 9>&- || true
  fi
  local pid
  for pid in $(our_shims); do kill -KILL "$pid" 2>/dev/null || true; done
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

# minikube の bridge CNI が作るブリッジ（名前は bridge）と、そこにつながる veth
cleanup_network() {
  local link
  sweep_iptables iptables
  sweep_iptables ip6tables
  if ip link show bridge >/dev/null 2>&1; then
    for link in $(ip -o link show master bridge 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$link" 2>/dev/null || true
    done
    ip link del bridge 2>/dev/null || true
  fi
  # kube-router の ipset（iptables の規則が消えた後でなければ消せない）
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
  # containerd の CRI が作った Pod のネットワーク名前空間
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  rmdir /run/netns 2>/dev/null || true
}

cleanup_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/kubepods* /sys/fs/cgroup/*/kubepods*; do
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# up の前と今のホストの要約を比べる。違いがあれば並べて失敗にする。--warn（途中で断たれた実行の
# 後片付け）では違いを警告として並べるだけにし、要約は捨てる（次の up が取り直す）
verify_machine() {
  local warn=false
  [[ ${1:-} == --warn ]] && warn=true
  [[ -f $SNAPSHOT_FILE ]] || return 0
  local now diff
  now=$(machine_state)
  diff=$(diff <(cat "$SNAPSHOT_FILE") <(echo "$now") | grep -E '^[<>]' || true)
  if [[ -n $diff ]]; then
    printf '%s\n' "$diff" >"$LOG_DIR/down-leftovers.txt"
    if $warn; then
      printf 'minikube.sh: warning: after the interrupted run the machine differs from before its up (< before, > now):\n%s\n' \
        "$(head -n 40 <<<"$diff")" >&2
      rm -f "$SNAPSHOT_FILE"
      return 0
    fi
    printf 'minikube.sh: down left the machine different from before up (< before, > now):\n%s\n' \
      "$(head -n 40 <<<"$diff")" >&2
    return 1
  fi
  rm -f "$SNAPSHOT_FILE"
  step "down: the machine is as it was before up"
}
