"""クラスタ内の確認の Job のコンテナが `python -c` で動かすスクリプト（mii は import せず、本文を渡す）。

アプリのイメージには mii が無いので、標準ライブラリだけで書く。引数: URL・件数・応答した Pod を
示すヘッダの名前。接続ごとに kube-proxy が Pod を選ぶ（keep-alive を使わない）。最後の行に
`{"url", "requests", "errors", "first_errors", "served_by"}` の JSON を出す
（in_cluster.parse_result が読む）。
"""

import collections
import json
import sys
import urllib.request

url, total, header = sys.argv[1], int(sys.argv[2]), sys.argv[3]
counts: collections.Counter[str] = collections.Counter()
errors: list[str] = []
for _ in range(total):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            counts[response.headers.get(header) or "unknown"] += 1
    except Exception as error:  # noqa: BLE001  どの失敗も数えて続ける
        errors.append(type(error).__name__ + ": " + str(error))
print(
    json.dumps(
        {
            "url": url,
            "requests": total,
            "errors": len(errors),
            "first_errors": errors[:3],
            "served_by": dict(counts),
        }
    )
)
