# shellcheck shell=bash
# minikube の起動と停止: none ドライバー・containerd・ビルドした Kubernetes、metrics-server アドオン。

# minikube を呼ぶときの環境（MINIKUBE_HOME と kubeconfig はこのスクリプトのもの）
minikube_env() {
  env MINIKUBE_HOME="$MINIKUBE_HOME_DIR" KUBECONFIG="$KUBECONFIG_FILE" \
    MINIKUBE_WANTUPDATENOTIFICATION=false MINIKUBE_IN_STYLE=false CHANGE_MINIKUBE_NONE_USER=false "$@"
}

mk() {
  minikube_env "$BIN/minikube" -p "$PROFILE" "$@"
}

kc() {
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=20s "$@"
}

minikube_running() {
  [[ -f $KUBECONFIG_FILE ]] && mk status --format '{{.Host}} {{.Kubelet}} {{.APIServer}}' 2>/dev/null |
    grep -qx 'Running Running Running'
}

start_minikube() {
  seed_minikube_cache
  local flags=(
    --driver=none --container-runtime=containerd --kubernetes-version="$K8S_VERSION"
    # SystemVerification: kubeadm が読めないカーネルの設定（/proc/config.gz など）で止まらないように
    --extra-config=kubeadm.ignore-preflight-errors=SystemVerification
    # metrics API は API サーバーからの経路がこれで通る（無いと APIService が 404 になる）
    --extra-config=apiserver.enable-aggregator-routing=true
    --wait=all --wait-timeout=6m0s
  )
  step "minikube: starting $MINIKUBE_VERSION (none driver, containerd, Kubernetes $K8S_VERSION; log $LOG_DIR/minikube-start.log)"
  run_step minikube-start 900 mk start "${flags[@]}"
  # ストレージプロビジョナーのイメージは作れない（ソースが古い API を使う）。このテストは使わない
  run_step minikube-addons 300 mk addons disable storage-provisioner
  run_step minikube-addons 300 mk addons enable metrics-server \
    --images="MetricsServer=$METRICS_SERVER_IMAGE" --registries="MetricsServer=$METRICS_SERVER_REGISTRY"
  if [[ ${MII_MINIKUBE_NETWORK_POLICY:-1} == 1 ]]; then
    sed "s|@IMAGE@|$KUBE_ROUTER_IMAGE|" "$TEMPLATES/kube-router.yml" >"$STATE_DIR/kube-router.yml"
    run_step kube-router 120 kc apply -f "$STATE_DIR/kube-router.yml"
    run_step kube-router 180 kc -n kube-system rollout status daemonset/kube-router --timeout=170s
    step "kube-router $KUBE_ROUTER_VERSION: enforcing NetworkPolicy (firewall only)"
  fi
  step "minikube: started; waiting for the node and the metrics API"
  wait_until 300 "the node to be Ready" "$LOG_DIR/minikube-start.log" \
    kc wait --for=condition=Ready node --all --timeout=10s
  wait_until 300 "the metrics API (metrics-server addon)" "$LOG_DIR/minikube-start.log" node_metrics_served
}

node_metrics_served() {
  kc get --raw /apis/metrics.k8s.io/v1beta1/nodes | grep -q '"usage"'
}

stop_minikube() {
  [[ -x $BIN/minikube && -d $MINIKUBE_HOME_DIR ]] || return 0
  step "minikube: deleting the profile (log $LOG_DIR/minikube-delete.log)"
  # delete は失敗しても後片付けを続ける（残ったものは下で消し、最後に確かめる）
  timeout -k 30 600 env MINIKUBE_HOME="$MINIKUBE_HOME_DIR" KUBECONFIG="$KUBECONFIG_FILE" \
    MINIKUBE_WANTUPDATENOTIFICATION=false "$BIN/minikube" delete --all --purge \
    >>"$LOG_DIR/minikube-delete.log" 2>&1 9>&- || step "minikube: delete failed; cleaning up by hand"
}
