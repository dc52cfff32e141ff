//go:build tools

// Package tools pins the cluster binaries hack/cluster.sh runs beside
// berthd. It is never built: the imports keep `go mod tidy` recording every
// module (and go.sum line) they need, so go.mod is the one place their
// versions are written. hack/tools.sh builds them (its K8S_TOOLS list).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"

	// etcd: the server module's root is its main package (a wrapper of
	// go.etcd.io/etcd/server/v3/etcdmain, as the etcd release binary).
	_ "go.etcd.io/etcd/server/v3"
)
