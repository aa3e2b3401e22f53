// Command wsload is the WebSocket benchmark's pods and load generator
// (bench/websocket.sh builds it into target/wsload and runs it):
//
//	wsload echo-server ADDR...                  WebSocket echo pods, one listener per address
//	wsload load -c 64 -d 10s -size 64 -host H URL   closed-loop echo load, one JSON line out
//	wsload idle -n 4000 -host H URL              open N WebSockets and hold them
//
// Where to start: echo.go (the pods), load.go (messages/s and latency), idle.go (the
// memory measurement's connections). One client library for every proxy under test,
// gorilla/websocket, so the only thing that differs between runs is the proxy.
//
// Every loop is bounded in time (-d, -max-lifetime, -hold, -open-timeout) and every
// address must be on loopback (127.0.0.0/8).
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "echo-server":
		err = echoServer(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wsload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: wsload echo-server ADDR... | load [flags] URL | idle [flags] URL")
	os.Exit(2)
}

// loopbackOnly refuses any host that is not an IPv4 loopback address: the benchmark
// never sends a byte off this machine.
func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only 127.0.0.0/8 addresses are allowed", hostport)
	}
	return nil
}

func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("%s: want a ws:// URL", raw)
	}
	return u, loopbackOnly(u.Host)
}

// emit prints one JSON object on its own line: the script's only input from us.
func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}
