package s3fs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/minio/minio-go/v7"
)

// reader reads one object with ranged GETs of ChunkSize, fetching
// ReadAhead chunks ahead in parallel while reads are sequential. A file
// no bigger than a chunk is one GET, with no HEAD first.
type reader struct {
	f      *FS
	key    string
	size   int64
	ctx    context.Context // ends with the handle: prefetches stop
	cancel context.CancelFunc

	mu     sync.Mutex
	chunks map[int64]*chunk
	next   int64 // where a sequential read would continue
}

type chunk struct {
	done chan struct{}
	data []byte
	err  error
}

func (f *FS) newReader(key string, size int64) *reader {
	ctx, cancel := context.WithCancel(context.Background())
	return &reader{f: f, key: key, size: size, ctx: ctx, cancel: cancel, chunks: map[int64]*chunk{}}
}

func (r *reader) close() { r.cancel() }

// get returns chunk i, starting its fetch if needed; r.mu must be held.
func (r *reader) get(i int64) *chunk {
	if c := r.chunks[i]; c != nil {
		return c
	}
	c := &chunk{done: make(chan struct{})}
	r.chunks[i] = c
	start := i * r.f.o.ChunkSize
	end := min(start+r.f.o.ChunkSize, r.size) - 1
	go func() {
		defer close(c.done)
		c.data, c.err = r.fetch(start, end)
	}()
	return c
}

func (r *reader) fetch(start, end int64) ([]byte, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(start, end); err != nil {
		return nil, err
	}
	core := minio.Core{Client: r.f.o.Client}
	body, _, _, err := core.GetObject(r.ctx, r.f.o.Bucket, r.key, opts)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return nil, nil // the object shrank: end of file
		}
		return nil, fmt.Errorf("get %s bytes %d-%d: %w", r.key, start, end, err)
	}
	defer body.Close()
	buf := make([]byte, end-start+1)
	n, err := io.ReadFull(body, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // shorter than listed: read what there is
	}
	if err != nil {
		return nil, fmt.Errorf("get %s bytes %d-%d: %w", r.key, start, end, err)
	}
	return buf[:n], nil
}

func (r *reader) read(ctx context.Context, dest []byte, off int64) (int, error) {
	if off >= r.size || len(dest) == 0 {
		return 0, nil
	}
	cs := r.f.o.ChunkSize
	last := min(off+int64(len(dest)), r.size) - 1
	first, lastChunk := off/cs, last/cs
	r.mu.Lock()
	seq := off == r.next
	var need []*chunk
	for i := first; i <= lastChunk; i++ {
		need = append(need, r.get(i))
	}
	if seq {
		for i := lastChunk + 1; i <= lastChunk+int64(r.f.o.ReadAhead) && i*cs < r.size; i++ {
			r.get(i)
		}
	}
	for i := range r.chunks {
		if i < first-1 || (!seq && i > lastChunk+int64(r.f.o.ReadAhead)) {
			delete(r.chunks, i) // behind us, or a stale read-ahead
		}
	}
	r.next = last + 1
	r.mu.Unlock()
	n := 0
	for k, c := range need {
		select {
		case <-c.done:
		case <-ctx.Done():
			return n, ctx.Err()
		}
		if c.err != nil {
			r.mu.Lock()
			delete(r.chunks, first+int64(k)) // let a retry fetch again
			r.mu.Unlock()
			return n, c.err
		}
		cstart := (first + int64(k)) * cs
		from := max(off+int64(n)-cstart, 0)
		if from >= int64(len(c.data)) {
			break
		}
		n += copy(dest[n:], c.data[from:])
		if off+int64(n) > last {
			break
		}
	}
	return n, nil
}
