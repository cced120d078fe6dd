package s3test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestServerRoundTrip(t *testing.T) {
	s := Start(t)
	b := s.Bucket(t)
	ctx := context.Background()
	c := s.Client()
	if _, err := c.PutObject(ctx, b, "a/b", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := c.GetObject(ctx, b, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	if err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v", got, err)
	}
	// Conditional create (If-None-Match: *), which the driver's metadata relies on.
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	if _, err := c.PutObject(ctx, b, "a/b", bytes.NewReader([]byte("x")), 1, opts); err == nil {
		t.Fatal("conditional create over an existing object succeeded")
	}
}
