// Command tcpstream is the bench's traffic tool, built static and copied
// into the test image: a server (-serve), a bulk sender that prints its
// throughput (-stream), and a request/response client that prints the
// median round trip (-rr).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"time"
)

func main() {
	serve := flag.String("serve", "", "listen address: 'S' connections are drained, 'E' connections echo 64-byte messages")
	stream := flag.String("stream", "", "send to this address for -d and print bytes/s")
	rr := flag.String("rr", "", "make -n 64-byte round trips to this address and print the median in µs")
	d := flag.Duration("d", 3*time.Second, "stream duration")
	n := flag.Int("n", 2000, "round trips")
	flag.Parse()
	var err error
	switch {
	case *serve != "":
		err = runServer(*serve)
	case *stream != "":
		err = runStream(*stream, *d)
	case *rr != "":
		err = runRR(*rr, *n)
	default:
		err = fmt.Errorf("one of -serve, -stream, -rr")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpstream:", err)
		os.Exit(1)
	}
}

func runServer(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			kind := make([]byte, 1)
			if _, err := io.ReadFull(c, kind); err != nil {
				return
			}
			if kind[0] == 'S' {
				io.Copy(io.Discard, c)
				return
			}
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

func runStream(addr string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{'S'}); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	var total int64
	start := time.Now()
	for time.Since(start) < d {
		n, err := c.Write(buf)
		total += int64(n)
		if err != nil {
			return err
		}
	}
	fmt.Printf("%.0f\n", float64(total)/time.Since(start).Seconds())
	return nil
}

func runRR(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{'E'}); err != nil {
		return err
	}
	buf := make([]byte, 64)
	lat := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("%.1f\n", float64(lat[len(lat)/2].Nanoseconds())/1e3)
	return nil
}
