//go:build tools

// Package tools pins the Kubernetes API server that the integration tests
// run (tests/k8s_server.py builds it with `go build`); nothing imports it.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
