"""`python -m service` でサーバーを起動する。"""

from service.server import main

main()
