package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Faults are the desk's random faults. Probabilities are 0..1 and drawn from
// the seeded generator.
type Faults struct {
	StreamDrop        float64       // per frame: close the WebSocket abruptly instead of sending
	StreamStall       float64       // per frame: send nothing (connection open) for StallFor
	StallFor          time.Duration // default 10s
	MalformedFrame    float64       // per frame: garbage, truncated JSON or a quote with a wrong field
	RESTLatency       time.Duration // added to every REST answer
	REST5xx           float64       // per REST request: 500/502/503 without effect
	REST429           float64       // per REST request: 429 with Retry-After (seconds, rounded up)
	RetryAfter        time.Duration // default 1s
	AcceptBlackhole   float64       // per accept: it takes effect, then the handler never answers
	WithdrawBlackhole float64       // per withdrawal POST: it is created, then no answer
	WithdrawFail      float64       // per withdrawal: it ends as failed with an error message
	// WithdrawSubstitute, per withdrawal POST: the desk books (and from then
	// on reports) the request to SubstituteAddress instead of the address
	// asked for — a compromised desk or a tampered request.
	WithdrawSubstitute float64
}

// SubstituteAddress is where a substituted withdrawal goes when no address
// is given: not on any allowlist.
const SubstituteAddress = "bc1qsimulatedattackeraddress0000000000000000"

// Substitution is how the desk changes a withdrawal it was asked for: a
// non-empty Address replaces the address, a non-zero Amount the amount. The
// request is booked and reported that way: it is what the desk did.
type Substitution struct {
	Address string
	Amount  decimal.Decimal
}

// faultsJSON is Faults on the /_sim/ test API: durations as Go duration
// strings ("10s").
type faultsJSON struct {
	StreamDrop         float64 `json:"streamDrop"`
	StreamStall        float64 `json:"streamStall"`
	StallFor           string  `json:"stallFor"`
	MalformedFrame     float64 `json:"malformedFrame"`
	RESTLatency        string  `json:"restLatency"`
	REST5xx            float64 `json:"rest5xx"`
	REST429            float64 `json:"rest429"`
	RetryAfter         string  `json:"retryAfter"`
	AcceptBlackhole    float64 `json:"acceptBlackhole"`
	WithdrawBlackhole  float64 `json:"withdrawBlackhole"`
	WithdrawFail       float64 `json:"withdrawFail"`
	WithdrawSubstitute float64 `json:"withdrawSubstitute"`
}

// MarshalJSON writes f with camelCase names and durations as strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		StreamDrop: f.StreamDrop, StreamStall: f.StreamStall, StallFor: f.StallFor.String(),
		MalformedFrame: f.MalformedFrame, RESTLatency: f.RESTLatency.String(), REST5xx: f.REST5xx,
		REST429: f.REST429, RetryAfter: f.RetryAfter.String(), AcceptBlackhole: f.AcceptBlackhole,
		WithdrawBlackhole: f.WithdrawBlackhole, WithdrawFail: f.WithdrawFail, WithdrawSubstitute: f.WithdrawSubstitute,
	})
}

// UnmarshalJSON reads what MarshalJSON writes; absent fields are zero.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Faults{
		StreamDrop: j.StreamDrop, StreamStall: j.StreamStall, MalformedFrame: j.MalformedFrame,
		REST5xx: j.REST5xx, REST429: j.REST429, AcceptBlackhole: j.AcceptBlackhole,
		WithdrawBlackhole: j.WithdrawBlackhole, WithdrawFail: j.WithdrawFail, WithdrawSubstitute: j.WithdrawSubstitute,
	}
	for _, p := range []struct {
		name string
		raw  string
		dst  *time.Duration
	}{{"stallFor", j.StallFor, &out.StallFor}, {"restLatency", j.RESTLatency, &out.RESTLatency}, {"retryAfter", j.RetryAfter, &out.RetryAfter}} {
		if p.raw == "" {
			continue
		}
		v, err := time.ParseDuration(p.raw)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		*p.dst = v
	}
	for name, p := range map[string]float64{"streamDrop": out.StreamDrop, "streamStall": out.StreamStall,
		"malformedFrame": out.MalformedFrame, "rest5xx": out.REST5xx, "rest429": out.REST429,
		"acceptBlackhole": out.AcceptBlackhole, "withdrawBlackhole": out.WithdrawBlackhole, "withdrawFail": out.WithdrawFail,
		"withdrawSubstitute": out.WithdrawSubstitute} {
		if p < 0 || p > 1 {
			return fmt.Errorf("%s: probability %v outside 0..1", name, p)
		}
	}
	*f = out
	return nil
}

// SetFaults replaces the random faults.
func (d *Desk) SetFaults(f Faults) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = f
}

// CurrentFaults returns the random faults in force.
func (d *Desk) CurrentFaults() Faults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// BlackholeNextAccepts makes the next n accept POSTs take effect (if valid)
// and then never answer.
func (d *Desk) BlackholeNextAccepts(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blackholeAcc = n
}

// BlackholeNextWithdrawals makes the next n valid withdrawal POSTs create
// their request and then never answer.
func (d *Desk) BlackholeNextWithdrawals(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blackholeWd = n
}

// FailNextWithdrawals makes the next n created withdrawals end as failed with
// msg (after processing), refunding their amount.
func (d *Desk) FailNextWithdrawals(n int, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if msg == "" {
		msg = "simulated withdrawal failure"
	}
	d.failWd = d.failWd[:0]
	for range n {
		d.failWd = append(d.failWd, msg)
	}
}

// SubstituteNextWithdrawals makes the next n withdrawal POSTs create their
// request changed by s (an empty s: to SubstituteAddress).
func (d *Desk) SubstituteNextWithdrawals(n int, s Substitution) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.Address == "" && s.Amount.IsZero() {
		s.Address = SubstituteAddress
	}
	d.substWd = d.substWd[:0]
	for range n {
		d.substWd = append(d.substWd, s)
	}
}

// FailNextREST makes the next n REST requests answer status without effect;
// a 429 carries Retry-After.
func (d *Desk) FailNextREST(n int, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failREST, d.failStatus = n, status
}

// MalformNextFrames makes the next n frames on any stream malformed.
func (d *Desk) MalformNextFrames(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.malformNext = n
}

// maxInjected bounds the frames queued by InjectFrames: a test resends a
// handful.
const maxInjected = 64

// InjectFrames queues frames to be sent as they are, one per tick on
// whichever stream ticks next, before any new quote: a desk (or a path) that
// sends a frame again, such as the frame of a quote already accepted. It
// reports false, queueing nothing, beyond maxInjected queued frames.
func (d *Desk) InjectFrames(frames ...[]byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.inject)+len(frames) > maxInjected {
		return false
	}
	for _, f := range frames {
		d.inject = append(d.inject, bytes.Clone(f))
	}
	return true
}
