// Command bareclient is the baseline of SPEC 8's side-by-side benchmark: the
// least a program can do to take quotes from the Astra desk. Per stream it
// reads a quote frame, decodes it (internal/astra's decoder), checks the limit
// price and POSTs the accept (internal/astra's client) — nothing else: no
// journal, no caps, no logging per quote. cmd/treasuryd's
// TestSideBySideWithBareClient runs it beside treasuryd, each against its own
// astra-sim, and compares the latency each desk measures from a quote's frame
// written to its accept received.
//
// Not for real money: it keeps no record of what it accepted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
)

// redialAfter spaces the reconnects of a stream that ended.
const redialAfter = 100 * time.Millisecond

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("bareclient", flag.ContinueOnError)
	var (
		baseURL   = fs.String("base-url", "http://127.0.0.1:7070/v2", "desk REST base URL")
		wsURL     = fs.String("ws-url", "ws://127.0.0.1:7070/v2", "desk WebSocket base URL")
		account   = fs.String("account", "", "account id (required)")
		keyEnv    = fs.String("api-key-env", "ASTRA_API_KEY", "environment variable holding the API key")
		streams   = fs.Int("streams", 50, "quote streams (programs) to open")
		side      = fs.String("side", "sell", "sell or buy the base asset")
		base      = fs.String("base", "BTC", "base asset")
		quote     = fs.String("quote", "USD", "quote asset")
		sizeText  = fs.String("size", "0.0001", "base quantity of every quote")
		limitText = fs.String("limit", "1", "limit price, quote asset per base asset: the worst price accepted")
		timeout   = fs.Duration("request-timeout", 2*time.Second, "accept POST timeout")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	size, err1 := decimal.NewFromString(*sizeText)
	limit, err2 := decimal.NewFromString(*limitText)
	switch {
	case *account == "":
		fmt.Fprintln(os.Stderr, "bareclient: -account is required")
		return 2
	case os.Getenv(*keyEnv) == "":
		fmt.Fprintf(os.Stderr, "bareclient: $%s (the API key) is empty\n", *keyEnv)
		return 2
	case err1 != nil || !size.IsPositive():
		fmt.Fprintf(os.Stderr, "bareclient: -size %q is not a positive decimal\n", *sizeText)
		return 2
	case err2 != nil || !limit.IsPositive():
		fmt.Fprintf(os.Stderr, "bareclient: -limit %q is not a positive decimal\n", *limitText)
		return 2
	case *side != "sell" && *side != "buy":
		fmt.Fprintf(os.Stderr, "bareclient: -side %q: want sell or buy\n", *side)
		return 2
	case *streams < 1:
		fmt.Fprintln(os.Stderr, "bareclient: -streams must be at least 1")
		return 2
	}
	c, err := astra.New(astra.Options{BaseURL: *baseURL, WSURL: *wsURL, APIKey: os.Getenv(*keyEnv),
		AccountID: *account, Timeout: *timeout})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bareclient: %v\n", err)
		return 2
	}
	// As treasuryd's quotes.RequestFor: a sell buys the quote asset with the
	// base, whose size is fixed.
	req := astra.StreamRequest{From: *base, To: *quote, FromQty: size}
	if *side == "sell" {
		req = astra.StreamRequest{From: *quote, To: *base, ToQty: size}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var st stats
	var wg sync.WaitGroup
	for range *streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stream{c: c, req: req, sell: *side == "sell", limit: limit, st: &st}
			for ctx.Err() == nil {
				if err := s.run(ctx); err != nil && ctx.Err() == nil {
					st.streamErrors.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(redialAfter):
				}
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	fmt.Fprintf(os.Stderr, "bareclient: %d quotes, %d accepted, %d refused or failed, %d over the limit, %d undecodable, %d stream errors\n",
		st.quotes.Load(), st.accepted.Load(), st.failed.Load(), st.overLimit.Load(), st.bad.Load(), st.streamErrors.Load())
	return 0
}

type stats struct {
	quotes, accepted, failed, overLimit, bad, streamErrors atomic.Int64
}

type stream struct {
	c     *astra.Client
	req   astra.StreamRequest
	sell  bool
	limit decimal.Decimal
	st    *stats
}

// run reads one connection of the stream until it ends, accepting every
// quote within the limit, one at a time.
func (s *stream) run(ctx context.Context) error {
	conn, err := s.c.DialQuotes(ctx, s.req)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	var q astra.Quote
	var dec astra.QuoteDecoder
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		s.st.quotes.Add(1)
		if err := dec.Decode(frame, &q); err != nil {
			s.st.bad.Add(1)
			continue
		}
		// price = quote qty / base qty, compared without dividing: a sell
		// wants quote ≥ limit × base, a buy pays quote ≤ limit × base.
		baseQty, quoteQty := q.FromQty, q.ToQty
		if s.sell {
			baseQty, quoteQty = q.ToQty, q.FromQty
		}
		c := quoteQty.Cmp(s.limit.Mul(baseQty))
		if s.sell && c < 0 || !s.sell && c > 0 {
			s.st.overLimit.Add(1)
			continue
		}
		if err := s.c.AcceptQuote(ctx, q.Raw); err != nil {
			s.st.failed.Add(1)
		} else {
			s.st.accepted.Add(1)
		}
	}
}
