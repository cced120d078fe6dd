// Package s3test runs a real S3 server for tests: versitygw over a
// temporary directory, on a loopback port. Nothing leaves the machine.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials of every test server.
const (
	AccessKey = "dockplugtest"
	SecretKey = "dockplugtestsecret"
	Region    = "us-east-1"
)

// Server is one running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Host     string // 127.0.0.1:PORT
	Dir      string // the posix backend's root: one directory per bucket
	cmd      *exec.Cmd
	done     chan struct{}
	out      *lockedBuffer
}

// Binary finds versitygw in PATH or in ~/go/bin (where scripts/setup.sh
// installs it).
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, "go", "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("versitygw not found in PATH nor ~/go/bin (install: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, or bash scripts/setup.sh)")
	}
	return p, nil
}

// Required reports whether a missing server must fail tests rather than
// skip them (DOCKPLUG_E2E=require, as in CI).
func Required() bool { return os.Getenv("DOCKPLUG_E2E") == "require" }

// Start starts a server for t, stopped (and its directory removed) when t
// ends. It skips t when versitygw is not installed, unless Required.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := StartProcess(bin, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("versitygw output:\n%s", s.out.String())
		}
	})
	return s
}

// StartProcess starts versitygw from bin over a new temporary directory
// (under parent, or the default temp dir). Stop it with Stop.
func StartProcess(bin, parent string) (*Server, error) {
	dir, err := os.MkdirTemp(parent, "s3test")
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	for range 5 {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		host := "127.0.0.1:" + strconv.Itoa(port)
		s := &Server{Endpoint: "http://" + host, Host: host, Dir: dir, done: make(chan struct{}), out: &lockedBuffer{}}
		s.cmd = exec.Command(bin, "--quiet", "--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", host, "posix", dir)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		// Pdeathsig fires when the thread that forked the child exits:
		// that thread stays locked until the server has been waited for.
		started := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := s.cmd.Start(); err != nil {
				started <- err
				return
			}
			started <- nil
			s.cmd.Wait()
			close(s.done)
		}()
		if err := <-started; err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("s3test: start versitygw: %w", err)
		}
		if err := s.waitUp(30 * time.Second); err != nil {
			s.kill()
			if strings.Contains(s.out.String(), "address already in use") {
				continue // lost the port to someone else: try another
			}
			os.RemoveAll(dir)
			return nil, fmt.Errorf("s3test: %w\n%s", err, s.out.String())
		}
		return s, nil
	}
	os.RemoveAll(dir)
	return nil, errors.New("s3test: no free port after 5 tries")
}

func (s *Server) waitUp(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", s.Host, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("versitygw exited: %v", s.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not listen on %s within %v", s.Host, limit)
		}
	}
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Stop ends the server (by its PID) and removes its directory.
func (s *Server) Stop() error {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
	return os.RemoveAll(s.Dir)
}

// Output is what the server printed (its first MiB).
func (s *Server) Output() string { return s.out.String() }

// Client is a minio client for the server with the test credentials.
func (s *Server) Client() *minio.Client {
	c, err := minio.New(s.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region: Region,
	})
	if err != nil {
		panic(err)
	}
	return c
}

// Bucket creates a bucket with a fresh name and returns it.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("b%d-%d", time.Now().UnixNano()%1e9, bucketSeq.Add())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Add() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

var bucketSeq counter

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("s3test: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
