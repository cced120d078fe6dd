package s3fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/minio/minio-go/v7"
)

// stream uploads a file that is written sequentially (a new or truncated
// file, appended to) as multipart parts while it is written: each full
// part goes up as soon as it is in the staged file, Options.Uploads in
// flight, so that the upload at close is only the tail. The staged file
// stays the source of truth: any other write, a truncate or a rename
// aborts the stream and the close uploads the whole file instead.
type stream struct {
	f        *FS
	file     *os.File
	key      string
	uploadID string
	partSize int64

	next int64 // offset of the next part to send

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	parts  []minio.CompletePart
	err    error
}

// startStream begins a multipart upload for key.
func (f *FS) startStream(ctx context.Context, file *os.File, key string) (*stream, error) {
	core := minio.Core{Client: f.o.Client}
	id, err := core.NewMultipartUpload(ctx, f.o.Bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return nil, fmt.Errorf("start multipart upload of %s: %w", key, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	return &stream{f: f, file: file, key: key, uploadID: id, partSize: int64(f.o.PartSize),
		ctx: sctx, cancel: cancel, sem: make(chan struct{}, f.o.Uploads)}, nil
}

// fill sends every full part below size (the staged file's length).
func (s *stream) fill(size int64) {
	for s.next+s.partSize <= size {
		s.send(s.next, s.partSize)
		s.next += s.partSize
	}
}

func (s *stream) send(off, size int64) {
	num := int(off/s.partSize) + 1
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.sem }()
		core := minio.Core{Client: s.f.o.Client}
		p, err := core.PutObjectPart(s.ctx, s.f.o.Bucket, s.key, s.uploadID, num, io.NewSectionReader(s.file, off, size), size, minio.PutObjectPartOptions{})
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			if s.err == nil {
				s.err = fmt.Errorf("part %d of %s: %w", num, s.key, err)
			}
			return
		}
		for len(s.parts) < num {
			s.parts = append(s.parts, minio.CompletePart{})
		}
		s.parts[num-1] = minio.CompletePart{PartNumber: num, ETag: p.ETag, ChecksumCRC32C: p.ChecksumCRC32C,
			ChecksumCRC32: p.ChecksumCRC32, ChecksumSHA1: p.ChecksumSHA1, ChecksumSHA256: p.ChecksumSHA256}
	}()
}

// finish sends the tail [next, size) and completes the upload.
func (s *stream) finish(ctx context.Context, size int64) error {
	if size > s.next {
		s.send(s.next, size-s.next)
		s.next = size
	}
	s.wg.Wait()
	s.mu.Lock()
	err, parts := s.err, s.parts
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return errors.New("multipart upload with no part")
	}
	core := minio.Core{Client: s.f.o.Client}
	if _, err := core.CompleteMultipartUpload(ctx, s.f.o.Bucket, s.key, s.uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("complete multipart upload of %s: %w", s.key, err)
	}
	s.cancel()
	return nil
}

// abort stops the stream and drops its parts (in the background: the
// caller uploads the whole file anyway).
func (s *stream) abort() {
	s.cancel()
	s.f.bg.Add(1)
	go func() {
		defer s.f.bg.Done()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), s3Abort)
		defer cancel()
		core := minio.Core{Client: s.f.o.Client}
		if err := core.AbortMultipartUpload(ctx, s.f.o.Bucket, s.key, s.uploadID); err != nil {
			s.f.log.Warn("abort multipart upload", "key", s.key, "err", err)
		}
	}()
}
