// Command gateway is the seed's gateway as a test load: a github.com/valyala/fasthttp
// Client with keep-alive calling one backend at a steady, bounded rate. Each request's
// answer names the pod that served it; every second the gateway prints one JSON line
// with the per-pod counts and failures, and the first time each pod answered.
//
//	gateway -url http://backend.shop.svc.cluster.local:8080/ -rate 200 -duration 40s
//	gateway -url ... -via fairway-proxy.fairway.svc:4140   # through the node-local proxy
//
// With -via, the client dials the proxy and keeps the backend's Host header: how
// docs/install.md tells a fasthttp user to send through Fairway (fasthttp ignores
// HTTP_PROXY).
package main

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

type second struct {
	Unix   int64            `json:"unix"`
	Counts map[string]int   `json:"counts"`
	Failed int              `json:"failed"`
	First  map[string]int64 `json:"first_ms,omitempty"`
}

func main() {
	url := flag.String("url", "", "backend URL (its host is the Host header)")
	via := flag.String("via", "", "dial this address instead of the URL's host")
	rate := flag.Int("rate", 200, "requests per second, over all workers")
	workers := flag.Int("workers", 8, "concurrent callers (keep-alive connections)")
	duration := flag.Duration("duration", 40*time.Second, "how long to send")
	flag.Parse()

	client := &fasthttp.Client{MaxConnsPerHost: *workers, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	if *via != "" {
		addr := *via
		client.Dial = func(string) (net.Conn, error) { return fasthttp.DialTimeout(addr, 5*time.Second) }
	}

	var mu sync.Mutex
	current := second{Counts: map[string]int{}, First: map[string]int64{}}
	seen := map[string]bool{}
	record := func(pod string, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			current.Failed++
			return
		}
		current.Counts[pod]++
		if !seen[pod] {
			seen[pod] = true
			current.First[pod] = time.Now().UnixMilli()
		}
	}

	end := time.Now().Add(*duration)
	interval := time.Duration(int64(time.Second) * int64(*workers) / int64(*rate))
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for time.Now().Before(end) {
				<-tick.C
				req.SetRequestURI(*url)
				err := client.Do(req, resp)
				record(string(resp.Body()), err == nil && resp.StatusCode() == fasthttp.StatusOK)
			}
		}()
	}

	out := json.NewEncoder(os.Stdout)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	flush := func(now time.Time) {
		mu.Lock()
		current.Unix = now.Unix()
		_ = out.Encode(current)
		current = second{Counts: map[string]int{}, First: map[string]int64{}}
		mu.Unlock()
	}
	tick := time.NewTicker(time.Second)
	for {
		select {
		case now := <-tick.C:
			flush(now)
		case <-done:
			flush(time.Now())
			return
		}
	}
}
