"""Docker の HEALTHCHECK: /health/ready に問い合わせ、200 なら終了コード 0（curl 不要）。"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    """ループバックの readiness を確かめる。"""
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # 固定のループバック URL
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
