"""`python -m mii_cli` で mii を実行する。"""

from mii_cli.cli import main

main()
