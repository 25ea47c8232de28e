"""テストで共有する代役: ネットワークの境界で本物の代わりをする小さなサーバーと、その中身。

- `kube_api`: Kubernetes API サーバー（公式クライアントがそのまま話す）
- `kube_objects`: API サーバーに置く Pod・イベントと、コントローラの代わりをするフック
- `mirroring_pods`: 安定版の Pod の `/metrics`（Pod のプロキシ越し）。影への写しの割合を ConfigMap から名乗る
- `docker_engine`: Docker Engine API（Docker SDK がそのまま話す）
- `cluster_tools`: minikube と kind のコマンド（PATH に置く本物のプログラム。mii は subprocess で呼ぶ）
- `http`: Pod やレジストリの代わりの小さな HTTP サーバーと、ASGI アプリを載せる uvicorn
- `services`: わざと約束を破る推論サービス（スモークテストと負荷試験の相手）
"""
