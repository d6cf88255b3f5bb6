//go:build tools

// Package tools pins the Consul server that the integration tests run
// (tests/consul_server.py builds it with `go build`); nothing imports it.
package tools

import _ "github.com/hashicorp/consul"
