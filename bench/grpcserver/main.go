// The gRPC "pods" of bench/grpc.sh: grpc-go serving the standard grpc.health.v1
// Health service (a unary Check with a tiny reply), one listener per address given,
// all in one process so one taskset pins them together. Nothing of ours runs per call:
// the benchmark measures the proxies, not this server.
//
//	grpcserver 127.0.0.11:28380 127.0.0.12:28380 ...
//
// It prints "ready" once every listener is bound and stops on SIGTERM or SIGINT.
package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: grpcserver ADDR...")
	}
	hs := health.NewServer() // every service, and "", reports SERVING
	var servers []*grpc.Server
	for _, addr := range os.Args[1:] {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("listen %s: %v", addr, err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, hs)
		servers = append(servers, s)
		go func() {
			if err := s.Serve(ln); err != nil {
				log.Fatalf("serve %s: %v", addr, err)
			}
		}()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, s := range servers {
		s.Stop()
	}
}
