package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/strategy"
)

// quoteFrame is a frame of a sell-BTC stream as the desk writes it: usd for
// 0.1 BTC, expiring ttl after at.
func quoteFrame(id string, usd decimal.Decimal, at time.Time, ttl time.Duration) []byte {
	return fmt.Appendf(nil, `{"quote":{"quoteId":%q,"accountId":%q,"fromAsset":"USD","toAsset":"BTC",`+
		`"fromAssetQuantity":%s,"toAssetQuantity":0.1,"expiryTime":%d,"signature":"5a0b7c3e9f6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e"}}`,
		id, testAccount, usd, at.Add(ttl).UnixMicro())
}

func syntheticProgram() config.Program {
	return config.Program{Name: "sell-btc", Base: "BTC", Quote: "USD", Side: config.SideSell, Size: dec("0.1"),
		LimitPrice: dec("60000"), Target: dec("0.1"), MinValidity: 100 * time.Millisecond}
}

var openEnv = journal.Frame{GateOpen: true, Balance: dec("5"), BalanceKnown: true}

func frameAt(id string, at time.Time, outcome string, inFlight bool) journal.Frame {
	f := openEnv
	f.Program, f.ReceivedAt, f.Raw, f.Outcome, f.InFlight = "sell-btc", at, quoteFrame(id, dec("6500"), at, 5*time.Second), outcome, inFlight
	return f
}

func insertAccept(t *testing.T, j *journal.Journal, quoteID string, sentAt time.Time, result string, resultAt time.Time) {
	t.Helper()
	ctx := context.Background()
	id, err := j.InsertAccept(ctx, journal.Accept{Program: "sell-btc", QuoteID: quoteID, RawQuote: []byte(`{}`),
		BaseAsset: "BTC", QuoteAsset: "USD", Side: config.SideSell, BaseQty: dec("0.1"), QuoteQty: dec("6500"),
		ExpiryMicros: sentAt.Add(5 * time.Second).UnixMicro(), SentAt: sentAt})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.SetAcceptResult(ctx, id, result, "", resultAt); err != nil {
		t.Fatal(err)
	}
}

// TestARefusedAcceptGivesItsProgressBackAtItsResultTime: the daemon's accept
// of q1 counts toward the target until the desk refuses it; a quote decided
// meanwhile meets the target, one decided after is accepted. Replay does the
// same, and does not count the refused accept as executed.
func TestARefusedAcceptGivesItsProgressBackAtItsResultTime(t *testing.T) {
	j := openJournal(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if err := j.RecordFrames(context.Background(), []journal.Frame{
		frameAt("q1", t0, strategy.OutcomeAccepted, false),
		frameAt("q2", t0.Add(10*time.Millisecond), strategy.OutcomeTargetReached, true),
		frameAt("q3", t0.Add(100*time.Millisecond), strategy.OutcomeAccepted, false),
		frameAt("q4", t0.Add(200*time.Millisecond), strategy.OutcomeTargetReached, false),
	}); err != nil {
		t.Fatal(err)
	}
	insertAccept(t, j, "q1", t0.Add(time.Millisecond), journal.AcceptRejected, t0.Add(50*time.Millisecond))
	insertAccept(t, j, "q3", t0.Add(101*time.Millisecond), journal.AcceptOK, t0.Add(120*time.Millisecond))
	got := replayOne(t, j, &config.Policy{AccountID: testAccount, Programs: []config.Program{syntheticProgram()}})
	if got.Differing != 0 || got.Matching != 4 {
		t.Fatalf("%d matching, %d differing: %+v", got.Matching, got.Differing, got.Differences)
	}
	if got.Accepts != 1 || got.AcceptsFailed != 1 || !got.BaseExecuted.Equal(dec("0.1")) || !got.Notional.Equal(dec("6500")) ||
		got.AveragePrice == nil || !got.AveragePrice.Equal(dec("65000")) {
		t.Fatalf("accepts %d, failed %d, base %s, notional %s, price %v; want 1, 1, 0.1, 6500, 65000",
			got.Accepts, got.AcceptsFailed, got.BaseExecuted, got.Notional, got.AveragePrice)
	}
	if got.Actual.Accepts != 1 || !got.Actual.BaseExecuted.Equal(dec("0.1")) {
		t.Fatalf("actual %+v, want 1 accept of 0.1", got.Actual)
	}
}

// TestAcceptsBeforeTheWindowAreRestored: progress made before the window
// (or before the first recorded frame) is where the daemon had it.
func TestAcceptsBeforeTheWindowAreRestored(t *testing.T) {
	j := openJournal(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	insertAccept(t, j, "q0", t0.Add(-2*time.Hour), journal.AcceptOK, t0.Add(-2*time.Hour))
	if err := j.RecordFrames(context.Background(), []journal.Frame{
		frameAt("q1", t0.Add(-90*time.Minute), strategy.OutcomeTargetReached, false),
		frameAt("q2", t0, strategy.OutcomeTargetReached, false),
	}); err != nil {
		t.Fatal(err)
	}
	pol := &config.Policy{AccountID: testAccount, Programs: []config.Program{syntheticProgram()}}
	tests := []struct {
		name   string
		since  time.Time
		quotes int64
	}{
		{"everything recorded", time.Time{}, 2},
		{"the last hour and a bit", t0.Add(-time.Minute), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Run(context.Background(), j, pol, Options{Since: tt.since})
			if err != nil {
				t.Fatal(err)
			}
			got := rep.Programs[0]
			if got.Quotes != tt.quotes || got.Differing != 0 || got.Outcomes[strategy.OutcomeTargetReached] != tt.quotes {
				t.Fatalf("quotes %d (want %d), differing %d, outcomes %v", got.Quotes, tt.quotes, got.Differing, got.Outcomes)
			}
			if got.Actual.Accepts != 0 || got.Accepts != 0 || got.AveragePrice != nil {
				t.Fatalf("accepts in the window: replayed %d, actual %d, price %v; want none", got.Accepts, got.Actual.Accepts, got.AveragePrice)
			}
		})
	}
}

func TestReplayOfAnUnknownProgramIsAnError(t *testing.T) {
	j := openJournal(t)
	pol := &config.Policy{AccountID: testAccount, Programs: []config.Program{syntheticProgram()}}
	if _, err := Run(context.Background(), j, pol, Options{Program: "nope"}); err == nil {
		t.Fatal("no error for a program the policy does not have")
	}
}
