package astra_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"treasuryd/internal/astra"
)

const oneRecord = `{"displayId":"t0","amount":"1","createdAt":"2024-01-15T10:30:00Z"}`

func listTransactions(c *astra.Client) error {
	return c.Transactions(context.Background(), func(astra.Transaction) error { return nil })
}

func TestGetRetriesTransientFailuresThenSucceeds(t *testing.T) {
	tests := []struct {
		name string
		fail func(w http.ResponseWriter)
	}{
		{"500", func(w http.ResponseWriter) { w.WriteHeader(500) }},
		{"502", func(w http.ResponseWriter) { w.WriteHeader(502) }},
		{"503", func(w http.ResponseWriter) { w.WriteHeader(503) }},
		{"429", func(w http.ResponseWriter) { w.WriteHeader(429) }},
		{"connection closed", hangUp},
		{"body cut before the first record", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "500")
			io.WriteString(w, `[{"displayId":"t0",`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d *desk
			d = newDesk(t, func(w http.ResponseWriter, r *http.Request) {
				if d.hits.Load() == 1 {
					tt.fail(w)
					return
				}
				io.WriteString(w, "["+oneRecord+"]")
			})
			got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
			if err != nil || len(got) != 1 {
				t.Fatalf("got %d records, %v; want the second attempt's record", len(got), err)
			}
			if n := d.hits.Load(); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
		})
	}
}

func TestGetGivesUpAfterMaxAttempts(t *testing.T) {
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"desk down"}`, 503)
	})
	err := listTransactions(newClient(t, d.URL, func(o *astra.Options) { o.MaxAttempts = 4 }))
	var apiErr *astra.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Message != "desk down" {
		t.Fatalf("got %v, want the desk's 503", err)
	}
	if n := d.hits.Load(); n != 4 {
		t.Errorf("%d requests, want MaxAttempts=4", n)
	}
}

func TestGetDoesNotRetryClientErrors(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			d := newDesk(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
			err := listTransactions(newClient(t, d.URL, nil))
			var apiErr *astra.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != status {
				t.Fatalf("got %v", err)
			}
			if d.hits.Load() != 1 {
				t.Errorf("%d requests, want 1", d.hits.Load())
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header func(now time.Time) (value string, notBefore time.Time)
	}{
		{"429 seconds", 429, func(now time.Time) (string, time.Time) { return "1", now.Add(time.Second) }},
		{"503 HTTP date", 503, func(now time.Time) (string, time.Time) {
			at := now.Truncate(time.Second).Add(2 * time.Second)
			return at.UTC().Format(http.TimeFormat), at
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var notBefore, retried time.Time
			var d *desk
			d = newDesk(t, func(w http.ResponseWriter, r *http.Request) {
				if d.hits.Load() == 1 {
					v, nb := tt.header(time.Now())
					notBefore = nb
					w.Header().Set("Retry-After", v)
					w.WriteHeader(tt.status)
					return
				}
				retried = time.Now()
				io.WriteString(w, "[]")
			})
			// Backoff alone would retry within 5ms: only Retry-After can make it wait.
			if err := listTransactions(newClient(t, d.URL, nil)); err != nil {
				t.Fatal(err)
			}
			if d.hits.Load() != 2 {
				t.Fatalf("%d requests, want 2", d.hits.Load())
			}
			if retried.Before(notBefore) {
				t.Errorf("retried %s before Retry-After allowed", notBefore.Sub(retried))
			}
		})
	}
}

func TestRetryAfterBeyondTheLimitFailsAtOnce(t *testing.T) {
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(429)
	})
	start := time.Now()
	err := listTransactions(newClient(t, d.URL, nil))
	var apiErr *astra.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 429 || !strings.Contains(err.Error(), "Retry-After") {
		t.Fatalf("got %v, want the 429 and why it was not retried", err)
	}
	if d.hits.Load() != 1 || time.Since(start) > 30*time.Second {
		t.Errorf("%d requests in %s, want 1 and no wait", d.hits.Load(), time.Since(start))
	}
}

func TestStreamedListIsNotRetriedAfterARecordWasDelivered(t *testing.T) {
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "["+oneRecord+",") // then the body ends short
	})
	got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
	if err == nil || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "/transactions/{account_id}") {
		t.Fatalf("got %v, want a truncation error naming the endpoint", err)
	}
	if len(got) != 1 || d.hits.Load() != 1 {
		t.Errorf("delivered %d, requests %d; want 1 and 1 (no retry after delivery)", len(got), d.hits.Load())
	}
}

func TestListCutAtTheEndIsTruncated(t *testing.T) {
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "["+oneRecord) // no closing bracket
	})
	got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("got %v, want a truncation error", err)
	}
	if len(got) != 1 || d.hits.Load() != 1 {
		t.Errorf("delivered %d, requests %d", len(got), d.hits.Load())
	}
}

func TestGetAttemptTimeoutIsRetriedThenReported(t *testing.T) {
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	err := listTransactions(newClient(t, d.URL, func(o *astra.Options) { o.Timeout = 50 * time.Millisecond; o.MaxAttempts = 2 }))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d.hits.Load() != 2 {
		t.Errorf("%d requests, want 2", d.hits.Load())
	}
}

func TestBodyStallTimesOutButSteadyProgressDoesNot(t *testing.T) {
	t.Run("stall after one record", func(t *testing.T) {
		d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "["+oneRecord+",")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		got, err := collect(context.Background(), newClient(t, d.URL, func(o *astra.Options) { o.Timeout = 100 * time.Millisecond }).Transactions)
		if !errors.Is(err, context.DeadlineExceeded) || len(got) != 1 {
			t.Fatalf("got %d records, %v; want 1 then a deadline error", len(got), err)
		}
	})
	t.Run("slow but steady", func(t *testing.T) {
		// The whole transfer takes longer than Timeout; no single gap does.
		d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "[")
			for i := range 8 {
				if i > 0 {
					io.WriteString(w, ",")
				}
				io.WriteString(w, oneRecord)
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond) // simulated slow desk, not synchronisation
			}
			io.WriteString(w, "]")
		})
		got, err := collect(context.Background(), newClient(t, d.URL, func(o *astra.Options) { o.Timeout = 500 * time.Millisecond }).Transactions)
		if err != nil || len(got) != 8 {
			t.Fatalf("got %d records, %v; want 8", len(got), err)
		}
	})
}

func TestPostIsNeverRetried(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(status)
			})
			c := newClient(t, d.URL, func(o *astra.Options) { o.MaxAttempts = 5 })
			_, werr := c.CreateWithdrawal(context.Background(), astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: "bc1q"})
			aerr := c.AcceptQuote(context.Background(), []byte(`{"quoteId":"q"}`))
			for _, err := range []error{werr, aerr} {
				var apiErr *astra.APIError
				if !errors.As(err, &apiErr) || apiErr.Status != status {
					t.Errorf("got %v, want the desk's %d visible", err, status)
				}
			}
			if n := d.hits.Load(); n != 2 {
				t.Errorf("%d requests for two POSTs, want 2", n)
			}
		})
	}
}

func TestPostOutcomeClassification(t *testing.T) {
	tests := []struct {
		name        string
		handle      http.HandlerFunc // nil: nothing listens
		wantUnknown bool
		wantStatus  int // 0: no APIError
	}{
		{"2xx", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"id":"w-1"}`) }, false, 0},
		{"400 refused", func(w http.ResponseWriter, r *http.Request) { http.Error(w, `{"error":"insufficient balance"}`, 400) }, false, 400},
		{"409 refused", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(409) }, false, 409},
		{"429 refused", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(429) }, false, 429},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, true, 500},
		{"503", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, true, 503},
		{"302 not followed", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", 302) }, true, 302},
		{"timeout after the request was read", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			<-r.Context().Done()
		}, true, 0},
		{"connection reset after the request was read", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			hangUp(w)
		}, true, 0},
		{"connection refused", nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := refusedURL(t)
			var d *desk
			if tt.handle != nil {
				d = newDesk(t, tt.handle)
				base = d.URL
			}
			c := newClient(t, base, func(o *astra.Options) { o.Timeout = 200 * time.Millisecond })
			ctx := context.Background()
			_, werr := c.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: "bc1q"})
			aerr := c.AcceptQuote(ctx, []byte(`{"quoteId":"q"}`))
			for name, err := range map[string]error{"withdrawal": werr, "accept": aerr} {
				if tt.name == "2xx" {
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("%s: no error", name)
				}
				if got := errors.Is(err, astra.ErrUnknownOutcome); got != tt.wantUnknown {
					t.Errorf("%s: unknown outcome = %v, want %v (%v)", name, got, tt.wantUnknown, err)
				}
				var apiErr *astra.APIError
				if ok := errors.As(err, &apiErr); ok != (tt.wantStatus != 0) || ok && apiErr.Status != tt.wantStatus {
					t.Errorf("%s: APIError %v, want status %d", name, err, tt.wantStatus)
				}
			}
			if d != nil && d.hits.Load() != 2 {
				t.Errorf("%d requests for two POSTs, want 2", d.hits.Load())
			}
		})
	}
}

func TestWithdrawalAnsweredWithoutAnIDIsUnknown(t *testing.T) {
	for _, body := range []string{`{}`, `{"id": ""}`, `not json`, `{"id": null}`} {
		t.Run(body, func(t *testing.T) {
			d := listDesk(t, body)
			_, err := newClient(t, d.URL, nil).CreateWithdrawal(context.Background(),
				astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: "bc1q"})
			if !errors.Is(err, astra.ErrUnknownOutcome) {
				t.Fatalf("got %v, want an unknown outcome (the desk said yes but no id came back)", err)
			}
		})
	}
}

func TestInvalidPostArgumentsAreRefusedWithoutSending(t *testing.T) {
	d := listDesk(t, `{}`)
	c := newClient(t, d.URL, nil)
	ctx := context.Background()
	errs := []error{
		c.AcceptQuote(ctx, nil),
		c.AcceptQuote(ctx, []byte(`{"quoteId":`)),
		c.AcceptQuote(ctx, []byte(`[1]`)),
	}
	for _, w := range []astra.NewWithdrawal{
		{InstrumentSymbol: "BTC", Amount: dec("0"), Network: "bitcoin", Address: "a"},
		{InstrumentSymbol: "BTC", Amount: dec("-1"), Network: "bitcoin", Address: "a"},
		{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin"},
	} {
		_, err := c.CreateWithdrawal(ctx, w)
		errs = append(errs, err)
	}
	for i, err := range errs {
		if err == nil || errors.Is(err, astra.ErrUnknownOutcome) {
			t.Errorf("case %d: %v, want a plain refusal", i, err)
		}
	}
	if d.hits.Load() != 0 {
		t.Errorf("%d requests sent for invalid arguments", d.hits.Load())
	}
}

func TestAcceptSendsTheQuoteByteForByte(t *testing.T) {
	quotes := map[string]string{
		"reference sample":             "", // filled from testdata below
		"odd spacing and number forms": "{ \"quoteId\" :\"q-1\",\n\t\"fromAssetQuantity\": 1.250 ,\"toAssetQuantity\":8.1436e4,\"expiryTime\":1733561867046245,\"signature\":\"ab\" }",
		"escapes and unicode":          `{"quoteId":"q\u002d2","note":"caf\u00e9 ☕","toAssetQuantity":-0.0,"big":123456789012345678901234567890}`,
		"leading whitespace":           "  \n{\"quoteId\":\"q3\"}\n",
	}
	quotes["reference sample"] = string(sampleQuote(t))
	for name, q := range quotes {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var got []byte
			d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = b
				mu.Unlock()
				io.WriteString(w, "{}")
			})
			if err := newClient(t, d.URL, nil).AcceptQuote(context.Background(), []byte(q)); err != nil {
				t.Fatal(err)
			}
			want := []byte(`{"quote":` + q + `}`)
			mu.Lock()
			defer mu.Unlock()
			if !bytes.Equal(got, want) {
				t.Errorf("body\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestAPIErrorCarriesTheDesksMessage(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes of two-byte runes
	tests := []struct{ name, body, want string }{
		{"message field", `{"message":"quote expired","error":"x"}`, "quote expired"},
		{"error field", `{"error":"bad signature"}`, "bad signature"},
		{"detail field", `{"detail":"account locked"}`, "account locked"},
		{"nested error object", `{"error":{"code":7}}`, `{"code":7}`},
		{"plain text", "upstream unavailable\n", "upstream unavailable"},
		{"empty", "", ""},
		{"long text cut at 256 bytes", long, strings.Repeat("é", 128) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(400)
				io.WriteString(w, tt.body)
			})
			err := newClient(t, d.URL, nil).AcceptQuote(context.Background(), []byte(`{}`))
			var apiErr *astra.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v", err)
			}
			if apiErr.Message != tt.want || apiErr.Endpoint != "/otc/accept-quote/{account_id}" || apiErr.Status != 400 {
				t.Errorf("got %+v, want message %q", apiErr, tt.want)
			}
		})
	}
}

func TestObserveReportsEveryAttempt(t *testing.T) {
	var d *desk
	d = newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		if d.hits.Load() == 1 {
			w.WriteHeader(502)
			return
		}
		io.WriteString(w, "[]")
	})
	var mu sync.Mutex
	var seen []string
	observe := func(endpoint, code string, dur time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if dur <= 0 {
			code += " (no duration)"
		}
		seen = append(seen, endpoint+" "+code)
	}
	if err := listTransactions(newClient(t, d.URL, func(o *astra.Options) { o.Observe = observe })); err != nil {
		t.Fatal(err)
	}
	_, _ = newClient(t, refusedURL(t), func(o *astra.Options) { o.Observe = observe; o.MaxAttempts = 1 }).Balances(context.Background())
	want := []string{"/transactions/{account_id} 502", "/transactions/{account_id} 200", "/balances/{account_id} error"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("observed %q, want %q", seen, want)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var keySeen atomic.Bool
	other := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		keySeen.Store(r.Header.Get(astra.APIKeyHeader) != "")
		io.WriteString(w, "[]")
	})
	d := newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	})
	err := listTransactions(newClient(t, d.URL, nil))
	var apiErr *astra.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 302 {
		t.Fatalf("got %v, want the 302 as an error", err)
	}
	if other.hits.Load() != 0 || keySeen.Load() {
		t.Error("the redirect was followed: the key went to another host")
	}
}

func TestAPIKeyAppearsInNoError(t *testing.T) {
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"message":"bad key %s"}`, r.Header.Get(astra.APIKeyHeader))
		}
	}
	hang := func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body); <-r.Context().Done() }
	serve := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
	}
	truncated := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "999")
		io.WriteString(w, "["+oneRecord+",{")
	}
	ctx := context.Background()
	list := func(c *astra.Client) error { return listTransactions(c) }
	withdraw := func(c *astra.Client) error {
		_, err := c.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: "bc1q"})
		return err
	}
	accept := func(c *astra.Client) error { return c.AcceptQuote(ctx, []byte(`{"quoteId":"q"}`)) }
	balances := func(c *astra.Client) error { _, err := c.Balances(ctx); return err }
	address := func(c *astra.Client) error { _, err := c.DepositAddress(ctx, "bitcoin"); return err }
	tests := []struct {
		name   string
		handle http.HandlerFunc // nil: dial refused
		call   func(*astra.Client) error
	}{
		{"GET 4xx echoing the key", echo(401), list},
		{"GET 5xx echoing the key", echo(500), balances},
		{"POST 4xx echoing the key", echo(403), accept},
		{"POST 5xx echoing the key", echo(502), withdraw},
		{"bad JSON", serve(`<html>oops</html>`), list},
		{"bad address JSON", serve(`{"address":`), address},
		{"truncated body", truncated, list},
		{"GET timeout", hang, list},
		{"POST timeout", hang, accept},
		{"dial refused GET", nil, list},
		{"dial refused POST", nil, withdraw},
		{"bad amount", serve(`[{"displayId":"` + testKey + `x","amount":"1,0","createdAt":"2024-01-15T10:30:00Z"}]`), list},
		{"bad balance", serve(`{"i":{"instrumentId":"i","amount":"` + "nope" + `"}}`), balances},
		{"withdrawal answer without id", serve(`{"note":"ok"}`), withdraw},
		{"POST reset", func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body); hangUp(w) }, accept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := refusedURL(t)
			if tt.handle != nil {
				base = newDesk(t, tt.handle).URL
			}
			err := tt.call(newClient(t, base, func(o *astra.Options) { o.Timeout = 100 * time.Millisecond; o.MaxAttempts = 2 }))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("the API key leaked: %v", err)
			}
		})
	}
}
