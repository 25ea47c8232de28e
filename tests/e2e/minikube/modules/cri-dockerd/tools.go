//go:build tools

// `go mod tidy` がビルドするコマンドの依存を go.sum に残すための import（ビルドはされない）。
package tools

import _ "github.com/Mirantis/cri-dockerd"
