//go:build tools

// `go mod tidy` がビルドするコマンドの依存を go.sum に残すための import（ビルドはされない）。
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
