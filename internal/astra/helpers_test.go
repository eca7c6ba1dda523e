package astra_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"treasuryd/internal/astra"
)

// testKey is distinctive so a leak into any error text is caught.
const (
	testKey     = "SECRET-astra-key-5f1e9b27c4"
	testAccount = "acct-42"
)

// desk is a loopback fake of the Astra desk: handle answers every request,
// and every request is counted and its headers and body recorded.
type desk struct {
	*httptest.Server
	hits atomic.Int64

	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

func newDesk(t *testing.T, handle http.HandlerFunc) *desk {
	t.Helper()
	d := &desk{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		handle(w, r)
	}))
	t.Cleanup(d.Close)
	return d
}

// recording wraps handle so that each request's method, path, headers and
// body are kept.
func (d *desk) record(r *http.Request, body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reqs = append(d.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
}

func (d *desk) requests() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorded(nil), d.reqs...)
}

// newClient builds a client on baseURL+"/v2" with fast retries.
func newClient(t *testing.T, baseURL string, mod func(*astra.Options)) *astra.Client {
	t.Helper()
	o := astra.Options{
		BaseURL:     baseURL + "/v2",
		WSURL:       "ws://127.0.0.1:1/v2",
		APIKey:      testKey,
		AccountID:   testAccount,
		Timeout:     5 * time.Second,
		MaxAttempts: 3,
		RetryBase:   time.Millisecond,
		RetryCap:    5 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := astra.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusedURL is a loopback address where nothing listens. Its port is drawn
// from below Linux's default ephemeral range (which starts at 32768), so no
// port-0 listener of a test running beside this one takes it between this
// check and the client's connect.
func refusedURL(t *testing.T) string {
	t.Helper()
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20768+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return "http://" + addr
	}
	t.Fatal("no unused loopback port found for a refused connection")
	return ""
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// collect gathers every record of a streamed list.
func collect[T any](ctx context.Context, list func(context.Context, func(T) error) error) ([]T, error) {
	var out []T
	err := list(ctx, func(v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}
