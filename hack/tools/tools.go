//go:build tools

// Package tools pins the Kubernetes tools berth's tests run against a real
// berthd. It is never built: the imports keep `go mod tidy` recording every
// module (and go.sum line) the tools need, so go.mod is the one place their
// versions are written. hack/tools.sh builds them.
//
// To add a tool (e.g. the kubelet from k8s.io/kubernetes): import its
// package here, `go get` the version, `go mod tidy`, and add a build line
// to hack/tools.sh.
package tools

import (
	// crictl: `go build sigs.k8s.io/cri-tools/cmd/crictl`.
	_ "sigs.k8s.io/cri-tools/cmd/crictl"

	// critest is a ginkgo test binary (`go test -c
	// sigs.k8s.io/cri-tools/cmd/critest`), a package with test files
	// only, so it cannot be imported itself: these are what its test
	// imports outside the standard library.
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/ginkgo/v2/types"
	_ "github.com/onsi/gomega"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/common"
	_ "sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
	_ "sigs.k8s.io/cri-tools/pkg/version"
)
