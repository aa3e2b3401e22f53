package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// idle opens -n WebSockets (-parallel handshakes at a time), checks each with one echo,
// prints {"open": ...} and holds them, idle, until a line (or EOF) on stdin or -hold.
// Then it checks every one again with an echo, prints {"alive": ...} and closes them:
// the script reads the proxy's memory between the two lines.
func idle(argv []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	n := fs.Int("n", 4000, "WebSockets to open")
	parallel := fs.Int("parallel", 32, "handshakes in flight at once")
	host := fs.String("host", "", "Host header (the fairway Route's host)")
	openTimeout := fs.Duration("open-timeout", 60*time.Second, "give up opening after this long")
	hold := fs.Duration("hold", 5*time.Minute, "hold at most this long without a line on stdin")
	fs.Parse(argv)
	if fs.NArg() != 1 {
		return fmt.Errorf("want one ws:// URL")
	}
	u, err := loopbackURL(fs.Arg(0))
	if err != nil {
		return err
	}
	if *n < 1 || *n > 20_000 || *parallel < 1 {
		return fmt.Errorf("-n 1..20000, -parallel >= 1")
	}
	// Small buffers: this side's memory is not the one measured, but 4,000 x 2 x 4 KiB
	// default buffers would be for nothing.
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 256, WriteBufferSize: 256}
	header := http.Header{}
	if *host != "" {
		header.Set("Host", *host)
	}

	start := time.Now()
	deadline := start.Add(*openTimeout)
	conns := make([]*websocket.Conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || time.Now().After(deadline) {
					return
				}
				c, _, err := dialer.Dial(u.String(), header)
				if err != nil {
					fail(err)
					continue
				}
				if err := ping(c, i, deadline); err != nil {
					c.Close()
					fail(err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	report := map[string]any{"open": open, "failed": failed.Load(), "seconds": time.Since(start).Seconds()}
	if e := firstErr.Load(); e != nil {
		report["first_error"] = e
	}
	emit(report)

	// Hold, idle, until the script has read what it wants.
	lines := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(lines)
	}()
	select {
	case <-lines:
	case <-time.After(*hold):
	}

	// Still tunnelled after the hold? One more echo on each, 32 at a time.
	checkBy := time.Now().Add(*openTimeout)
	var alive atomic.Int64
	sem := make(chan struct{}, *parallel)
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ping(c, i, checkBy) == nil {
				alive.Add(1)
			}
			c.Close()
		}()
	}
	wg.Wait()
	emit(map[string]any{"alive": alive.Load()})
	if open < *n {
		return fmt.Errorf("opened %d of %d WebSockets", open, *n)
	}
	return nil
}

// ping sends one small message on c and waits for the same bytes back.
func ping(c *websocket.Conn, i int, deadline time.Time) error {
	msg := []byte(fmt.Sprintf("idle-%d", i))
	c.SetWriteDeadline(deadline)
	c.SetReadDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
		return err
	}
	_, got, err := c.ReadMessage()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs")
	}
	c.SetReadDeadline(time.Time{})
	c.SetWriteDeadline(time.Time{})
	return nil
}
