// Command pause is the node's sandbox image (containerd's sandbox_image): it holds a
// pod's namespaces and does nothing else until told to stop. Nothing can be pulled on
// the test node, so registry.k8s.io/pause is replaced by this.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
