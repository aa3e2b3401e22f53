package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// loadResult is what `load` prints: one JSON object.
type loadResult struct {
	Connections int     `json:"connections"`
	Size        int     `json:"size"`
	Seconds     float64 `json:"seconds"`
	Messages    int     `json:"messages"`
	MessagesPS  float64 `json:"messages_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
}

// load opens -c WebSockets, then each sends a -size byte binary message and waits for
// its echo, again and again (a closed loop: the rate is what the path can carry), for
// -warmup unrecorded and then -d recorded. Latency is send-to-echo per message.
func load(argv []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	conns := fs.Int("c", 64, "connections")
	dur := fs.Duration("d", 10*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured duration before -d")
	size := fs.Int("size", 64, "message size, bytes")
	host := fs.String("host", "", "Host header (the fairway Route's host)")
	maxPerConn := fs.Int("max-messages", 10_000_000, "stop a connection after this many messages")
	fs.Parse(argv)
	if fs.NArg() != 1 {
		return fmt.Errorf("want one ws:// URL")
	}
	u, err := loopbackURL(fs.Arg(0))
	if err != nil {
		return err
	}
	if *conns < 1 || *conns > 10_000 || *size < 1 || *dur > time.Hour {
		return fmt.Errorf("-c 1..10000, -size >= 1, -d <= 1h")
	}

	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}
	header := http.Header{}
	if *host != "" {
		header.Set("Host", *host) // gorilla sends it as the request's Host
	}
	cs := make([]*websocket.Conn, 0, *conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range *conns {
		c, resp, err := dialer.Dial(u.String(), header)
		if err != nil {
			status := ""
			if resp != nil {
				status = " (" + resp.Status + ")"
			}
			return fmt.Errorf("dial %s%s: %w", u, status, err)
		}
		cs = append(cs, c)
	}

	start := time.Now()
	measureFrom := start.Add(*warmup)
	end := measureFrom.Add(*dur)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(10*time.Second))
	defer cancel()

	type perConn struct {
		lat []time.Duration
		err error
	}
	results := make([]perConn, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte('a' + i%26)}, *size)
			lat := make([]time.Duration, 0, 1<<14)
			// A reply stuck past the end: the deadline ends the read, not the run.
			c.SetReadDeadline(end.Add(5 * time.Second))
			for n := 0; n < *maxPerConn && ctx.Err() == nil; n++ {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					results[i].err = err
					break
				}
				_, got, err := c.ReadMessage()
				if err != nil {
					results[i].err = err
					break
				}
				if !bytes.Equal(got, msg) {
					results[i].err = fmt.Errorf("echo differs: %d bytes back for %d", len(got), len(msg))
					break
				}
				if t0.After(measureFrom) {
					lat = append(lat, time.Since(t0))
				}
			}
			results[i].lat = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	if elapsed > *dur {
		elapsed = *dur // the last replies land after `end`; the window is -d
	}

	out := loadResult{Connections: len(cs), Size: *size, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.lat...)
		if r.err != nil {
			out.Errors++
			if out.FirstError == "" {
				out.FirstError = r.err.Error()
			}
		}
	}
	slices.Sort(all)
	out.Messages = len(all)
	out.MessagesPS = float64(len(all)) / elapsed.Seconds()
	out.P50ms, out.P90ms, out.P99ms = pct(all, 50), pct(all, 90), pct(all, 99)
	if len(all) > 0 {
		out.MaxMs = ms(all[len(all)-1])
	}
	emit(out)
	if out.Errors > 0 {
		return fmt.Errorf("%d connections failed, first: %s", out.Errors, out.FirstError)
	}
	return nil
}

// pct is the nearest-rank percentile of sorted latencies, in milliseconds.
func pct(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return ms(sorted[max(i-1, 0)])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
