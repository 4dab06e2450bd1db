# Pinned versions of the code generators, installed with `go install` (they run
# locally; no remote plugins). Sourced by scripts/test and scripts/generate.
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2

TOOLS_BIN="${TOOLS_BIN:-$(go env GOPATH)/bin}"
export PATH="$TOOLS_BIN:$PATH"

# install_tools installs buf, the protoc plugins and staticcheck at the pinned versions
# unless the right versions are already there.
install_tools() {
	if ! buf --version 2>/dev/null | grep -qx "${BUF_VERSION#v}"; then
		echo "installing buf $BUF_VERSION"
		GOFLAGS= go install "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION"
	fi
	if ! protoc-gen-go --version 2>/dev/null | grep -q "$PROTOC_GEN_GO_VERSION"; then
		echo "installing protoc-gen-go $PROTOC_GEN_GO_VERSION"
		GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
	fi
	if ! protoc-gen-go-grpc --version 2>/dev/null | grep -q "${PROTOC_GEN_GO_GRPC_VERSION#v}"; then
		echo "installing protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION"
		GOFLAGS= go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
	fi
	if ! staticcheck -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
		echo "installing staticcheck $STATICCHECK_VERSION"
		GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	fi
}
