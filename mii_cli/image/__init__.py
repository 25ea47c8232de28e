"""イメージ: ビルド（build）、Docker エンジンへの窓口（docker）、ローカルのコンテナでの実行（container）、
性能の測定（benchmark）、クラスタへの渡し方（delivery: minikube・kind への読み込み、レジストリへの push）。"""
