#!/bin/sh
# イメージの起動スクリプト。exec で置き換え、サーバーが PID 1 として SIGTERM を直接受ける。
set -eu
exec python -m service "$@"
