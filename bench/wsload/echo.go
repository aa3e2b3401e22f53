package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// echoServer runs one WebSocket echo "pod" per address until SIGTERM or
// -max-lifetime. Each message comes back as one message of the same type.
func echoServer(argv []string) error {
	fs := flag.NewFlagSet("echo-server", flag.ExitOnError)
	lifetime := fs.Duration("max-lifetime", 2*time.Hour, "exit after this long whatever happens")
	fs.Parse(argv)
	if fs.NArg() == 0 {
		return fmt.Errorf("no address to listen on")
	}
	upgrader := websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// The proxies rewrite nothing here; any Origin is fine on loopback.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	for _, addr := range fs.Args() {
		if err := loopbackOnly(addr); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		pod := addr
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if !websocket.IsWebSocketUpgrade(r) {
				// Readiness probes and plain requests: say which pod answered.
				fmt.Fprintf(w, "pod %s\n", pod)
				return
			}
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			go echo(c)
		})
		go http.Serve(ln, mux)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*lifetime):
	}
	return nil
}

// echo copies each message back until the peer closes or an error ends the connection.
func echo(c *websocket.Conn) {
	defer c.Close()
	buf := make([]byte, 4096) // one per connection: io.Copy would allocate 32 KiB per message
	for {
		kind, r, err := c.NextReader()
		if err != nil {
			return
		}
		w, err := c.NextWriter(kind)
		if err != nil {
			return
		}
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			return
		}
	}
}
