//go:build tools

// `go mod tidy` が etcd の依存を go.sum に残すための import（ビルドはされない）。
package tools

import _ "go.etcd.io/etcd/server/v3"
