// lbload: the balancing benchmark's pods and its open-loop load (issue 18), standard
// library only.
//
//	lbload pods -port 28480 -ips 127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14 \
//	    -service 5ms -workers 4 -slow 127.0.0.13 -stall 127.0.0.14
//	lbload load -url http://127.0.0.1:28440/ -host orders.bench -rate 2000 -duration 20s
//
// Pods serve with a fixed number of workers (a request waits for a free one), so a
// busy pod queues: what a balancer should steer around. One pod is 3x slower per
// request; one stalls every request for 200 ms once every 2 s (a GC pause, a noisy
// neighbour). The load is open loop: requests start on a fixed schedule whatever the
// answers do, and each latency is measured from its scheduled start, so a stalled
// proxy or pod cannot slow the load down and hide its own tail (coordinated omission).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lbload pods|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "pods":
		err = pods(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbload:", err)
		os.Exit(1)
	}
}

// --- pods ---------------------------------------------------------------------------

type pod struct {
	name    string
	workers chan struct{}
	service time.Duration
	// Stalls: every `every`, requests served during the first `stall` wait it out.
	stall, every time.Duration
	start        time.Time
}

func (p *pod) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	// A request whose client left (a proxy's timeout) leaves the queue: a pod that
	// served abandoned work would carry one run's overload into the next.
	select {
	case p.workers <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	if p.every > 0 {
		into := time.Since(p.start) % p.every
		if into < p.stall {
			time.Sleep(p.stall - into)
		}
	}
	time.Sleep(p.service)
	<-p.workers
	w.Header().Set("x-fairway-pod", p.name)
	w.Header().Set("content-length", fmt.Sprint(len(p.name)))
	_, _ = io.WriteString(w, p.name)
}

func pods(args []string) error {
	fs := flag.NewFlagSet("pods", flag.ExitOnError)
	port := fs.Int("port", 28480, "port on every pod address")
	ips := fs.String("ips", "127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14", "pod addresses")
	service := fs.Duration("service", 5*time.Millisecond, "service time per request")
	workers := fs.Int("workers", 4, "requests a pod serves at once")
	slow := fs.String("slow", "", "the pod 3x slower per request")
	stalling := fs.String("stall", "", "the pod that stalls 200 ms every 2 s")
	_ = fs.Parse(args)
	start := time.Now()
	errs := make(chan error)
	for i, ip := range strings.Split(*ips, ",") {
		p := &pod{
			name:    fmt.Sprintf("pod-%d", i+1),
			workers: make(chan struct{}, *workers),
			service: *service,
			start:   start,
		}
		if ip == *slow {
			p.service *= 3
		}
		if ip == *stalling {
			p.stall, p.every = 200*time.Millisecond, 2*time.Second
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, *port))
		if err != nil {
			return err
		}
		go func() { errs <- http.Serve(ln, p) }()
	}
	return <-errs
}

// --- load ---------------------------------------------------------------------------

type result struct {
	Rate     float64        `json:"rate"`
	Achieved float64        `json:"achieved"`
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	P50      float64        `json:"p50_ms"`
	P90      float64        `json:"p90_ms"`
	P99      float64        `json:"p99_ms"`
	P999     float64        `json:"p999_ms"`
	Max      float64        `json:"max_ms"`
	Shares   map[string]int `json:"shares"`
	FirstErr string         `json:"first_error,omitempty"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	urls := fs.String("url", "", "target URL (comma-separated: requests rotate over them)")
	host := fs.String("host", "", "Host header")
	rate := fs.Float64("rate", 1000, "requests per second")
	duration := fs.Duration("duration", 20*time.Second, "measured time")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured time first")
	conns := fs.Int("conns", 512, "most connections per target")
	timeout := fs.Duration("timeout", 10*time.Second, "per request")
	_ = fs.Parse(args)
	targets := strings.Split(*urls, ",")
	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: *conns,
			MaxConnsPerHost:     *conns,
			DisableCompression:  true,
		},
	}
	var (
		mu        sync.Mutex
		latencies []float64
		shares    = map[string]int{}
		errCount  int
		firstErr  string
		wg        sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / *rate)
	total := int((*warmup + *duration) / interval)
	measuredFrom := int(*warmup / interval)
	begin := time.Now()
	for i := 0; i < total; i++ {
		at := begin.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(context.Background(), "GET", targets[i%len(targets)], nil)
			if *host != "" {
				req.Host = *host
			}
			resp, err := client.Do(req)
			podName := ""
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				podName = resp.Header.Get("x-fairway-pod")
			}
			ms := float64(time.Since(at)) / float64(time.Millisecond)
			if i < measuredFrom {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errCount++
				if firstErr == "" {
					firstErr = err.Error()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					latencies = append(latencies, ms)
				}
				return
			}
			latencies = append(latencies, ms)
			shares[podName]++
		}(i, at)
	}
	sent := time.Since(begin)
	wg.Wait()
	slices.Sort(latencies)
	q := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	measured := total - measuredFrom
	out := result{
		Rate:     *rate,
		Achieved: float64(total) / sent.Seconds(),
		Requests: measured,
		Errors:   errCount,
		P50:      q(0.50),
		P90:      q(0.90),
		P99:      q(0.99),
		P999:     q(0.999),
		Max:      q(1),
		Shares:   shares,
		FirstErr: firstErr,
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
