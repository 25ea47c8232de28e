"""動いているサービスを確かめる。

確認の計画と判定（smoke_test）、負荷試験（load_test と locust_runner）、URL の検査（targets）、
クラスタ内の Job での確認（in_cluster）、デプロイしたサービスのスモークテスト（cluster）。
"""
