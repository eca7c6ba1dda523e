package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAcceptLatencyIsFrameWrittenToAcceptReceived(t *testing.T) {
	d, _ := startDesk(t)
	root := strings.TrimSuffix(d.BaseURL(), "/v2")
	report := func() AcceptLatency {
		t.Helper()
		resp, b := do(t, "GET", root+"/_sim/accept-latency", "", nil)
		var r AcceptLatency
		if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
			t.Fatalf("GET /_sim/accept-latency: %d %s", resp.StatusCode, b)
		}
		return r
	}

	// Off by default: an accept is not measured.
	off := dial(t, d, "from=USD&to=BTC&toQty=0.01")
	if code, body := accept(t, d, acceptBody(readQuote(t, off).raw)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	off.Close()
	if r := report(); r.Accepts != 0 || r.Unmatched != 0 {
		t.Fatalf("measured while off: %+v", r)
	}

	d.MeasureAcceptLatency(true)
	conn := dial(t, d, "from=USD&to=BTC&toQty=0.01")
	slow := readQuote(t, conn)
	const hold = 50 * time.Millisecond
	time.Sleep(hold) // a client that takes its time
	if code, body := accept(t, d, acceptBody(slow.raw)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	fast := readQuote(t, conn)
	if code, body := accept(t, d, acceptBody(fast.raw)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	// A second accept of the same quote has no frame left to match.
	if code, _ := accept(t, d, acceptBody(fast.raw)); code != 409 {
		t.Fatalf("second accept of a quote: %d, want 409", code)
	}
	r := report()
	if r.Accepts != 2 || r.Unmatched != 1 {
		t.Fatalf("report %+v, want 2 accepts and 1 unmatched", r)
	}
	if r.Max < hold || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.Max {
		t.Errorf("report %+v: want p50 > 0, p50 <= p99 <= max, and max >= %s (the slow accept)", r, hold)
	}

	resp, b := do(t, "POST", root+"/_sim/accept-latency/reset", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("reset: %d %s", resp.StatusCode, b)
	}
	if r := report(); r.Accepts != 0 || r.Unmatched != 0 || r.Max != 0 {
		t.Errorf("after reset: %+v", r)
	}
}
