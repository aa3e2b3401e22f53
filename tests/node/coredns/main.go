// Command coredns is the cluster DNS of the test node: upstream CoreDNS from its Go
// module, with only the plugins the node's Corefile uses linked in (the full plugin set
// pulls in every cloud SDK). The plugin order still comes from CoreDNS's own
// zdirectives.go, so the server behaves as the released binary does.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
