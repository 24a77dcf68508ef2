//go:build tools

// Package tools pins the control-plane binaries the end-to-end suite builds
// (into a cache outside the repository, see the Makefile's e2e-tools target):
// kube-apiserver from k8s.io/kubernetes (every staging module replaced by its
// published version in go.mod) and etcd from go.etcd.io/etcd/server/v3. The
// versions are the ones go.mod requires; the Makefile checks that they match
// its KUBERNETES_VERSION and ETCD_VERSION.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
