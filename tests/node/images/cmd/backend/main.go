// Command backend is the test node's HTTP backend: every answer names the pod that
// served it (the POD_NAME environment variable, else the hostname), so a client can
// count the share each pod got. GET /resolve?name=N answers the addresses N resolves
// to from inside the pod (the kubelet's resolv.conf, cluster DNS, the DNS ClusterIP).
// It speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port, as a gRPC
// or h2c pod would.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(name))
	})
	http.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.LookupHost(r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, strings.Join(addrs, ","))
	})
	log.Printf("backend %s listening on %s", name, *addr)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	server := &http.Server{Addr: *addr, Protocols: &protocols}
	log.Fatal(server.ListenAndServe())
}
