// Command astra-sim serves the Astra OTC desk simulator (and, with
// -astral-listen, the Astral index simulator; with -chain-listen too, the
// chains' JSON-RPC endpoints that hold its proofs as EAS attestations at
// http://ADDR/{chain}) as a standalone server for
// development and external tests. Faults are set by flag here and changed at
// run time through the desk's /_sim/ test API.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/sim"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("astra-sim", flag.ContinueOnError)
	var (
		listen       = fs.String("listen", "127.0.0.1:7070", "desk listen address")
		astralListen = fs.String("astral-listen", "", "Astral simulator listen address (empty: not started)")
		chainListen  = fs.String("chain-listen", "", "chain JSON-RPC simulator listen address, serving eth_call of EAS getAttestation at /{chain} (needs -astral-listen; empty: not started)")
		seed         = fs.Int64("seed", 42, "random seed (quotes, ids, faults)")
		account      = fs.String("account", "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50", "account id (UUID)")
		apiKey       = fs.String("api-key", envOr("ASTRA_API_KEY", "sim-key"), "API key the desk expects (default $ASTRA_API_KEY, else sim-key)")
		balances     = fs.String("balances", "BTC=5,USD=250000,ETH=40", "starting balances SYMBOL=AMOUNT,...")
		prices       = fs.String("prices", "BTC-USD=65000,ETH-USD=3200", "starting prices PAIR=PRICE,...")
		volatility   = fs.String("volatility-bps", "20", "random walk step per quote, basis points")
		interval     = fs.Duration("quote-interval", time.Second, "time between quotes on a stream")
		phase        = fs.String("quote-phase", "connect", "when each stream's quotes are sent: connect (every -quote-interval from its connect), aligned (at multiples of the interval since the Unix epoch: every stream of every desk together) or spread (the n-th stream to connect at a fixed offset within the epoch grid, the same on every desk, streams apart)")
		ttl          = fs.Duration("quote-ttl", 5*time.Second, "quote validity")
		wdStep       = fs.Duration("withdrawal-step", time.Second, "time per withdrawal status step")
		measureLat   = fs.Bool("measure-accept-latency", false, "measure each accept's latency from its quote frame written to the accept received (GET /_sim/accept-latency)")
		f            sim.Faults
	)
	fs.Float64Var(&f.StreamDrop, "stream-drop", 0, "per frame: probability of closing the WebSocket abruptly")
	fs.Float64Var(&f.StreamStall, "stream-stall", 0, "per frame: probability of stalling the stream for -stall-for")
	fs.DurationVar(&f.StallFor, "stall-for", 10*time.Second, "length of a stream stall")
	fs.Float64Var(&f.MalformedFrame, "malformed-frame", 0, "per frame: probability of a malformed frame")
	fs.DurationVar(&f.RESTLatency, "rest-latency", 0, "latency added to every REST answer")
	fs.Float64Var(&f.REST5xx, "rest-5xx", 0, "per REST request: probability of 500/502/503 without effect")
	fs.Float64Var(&f.REST429, "rest-429", 0, "per REST request: probability of 429 with Retry-After")
	fs.DurationVar(&f.RetryAfter, "retry-after", time.Second, "Retry-After of a 429")
	fs.Float64Var(&f.AcceptBlackhole, "accept-blackhole", 0, "per accept: probability that it takes effect and never answers")
	fs.Float64Var(&f.WithdrawBlackhole, "withdraw-blackhole", 0, "per withdrawal POST: probability that it is created and never answers")
	fs.Float64Var(&f.WithdrawFail, "withdraw-fail", 0, "per withdrawal: probability that it ends as failed")
	fs.Float64Var(&f.WithdrawSubstitute, "withdraw-substitute", 0, "per withdrawal POST: probability that the desk books it to another address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *chainListen != "" && *astralListen == "" {
		fmt.Fprintln(os.Stderr, "astra-sim: -chain-listen needs -astral-listen (the chain holds the index's proofs)")
		return 2
	}
	bal, err := parseAmounts(*balances)
	if err != nil {
		fmt.Fprintf(os.Stderr, "astra-sim: -balances: %v\n", err)
		return 2
	}
	px, err := parseAmounts(*prices)
	if err != nil {
		fmt.Fprintf(os.Stderr, "astra-sim: -prices: %v\n", err)
		return 2
	}
	vol, err := decimal.NewFromString(*volatility)
	if err != nil || vol.IsNegative() {
		fmt.Fprintf(os.Stderr, "astra-sim: -volatility-bps: %q is not a non-negative decimal\n", *volatility)
		return 2
	}
	for name, p := range map[string]float64{"stream-drop": f.StreamDrop, "stream-stall": f.StreamStall,
		"malformed-frame": f.MalformedFrame, "rest-5xx": f.REST5xx, "rest-429": f.REST429,
		"accept-blackhole": f.AcceptBlackhole, "withdraw-blackhole": f.WithdrawBlackhole, "withdraw-fail": f.WithdrawFail,
		"withdraw-substitute": f.WithdrawSubstitute} {
		if p < 0 || p > 1 {
			fmt.Fprintf(os.Stderr, "astra-sim: -%s: %v is not a probability in 0..1\n", name, p)
			return 2
		}
	}

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintf(os.Stderr, "astra-sim: logger: %v\n", err)
		return 1
	}
	defer log.Sync()

	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: *account, APIKey: *apiKey, Seed: *seed, Balances: bal, Prices: px, VolatilityBps: vol,
		QuoteInterval: *interval, QuotePhase: *phase, QuoteTTL: *ttl, WithdrawalStep: *wdStep,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "astra-sim: %v\n", err)
		return 2
	}
	desk.SetFaults(f)
	desk.MeasureAcceptLatency(*measureLat)
	if err := desk.Start(*listen); err != nil {
		log.Error("desk start failed", zap.Error(err))
		return 1
	}
	defer desk.Close()
	log.Info("astra desk simulator listening", zap.String("rest", desk.BaseURL()), zap.String("ws", desk.WSURL()),
		zap.String("account", *account), zap.Int64("seed", *seed))

	if *astralListen != "" {
		astral := sim.NewAstral(sim.AstralConfig{})
		if err := astral.Start(*astralListen); err != nil {
			log.Error("astral start failed", zap.Error(err))
			return 1
		}
		defer astral.Close()
		log.Info("astral simulator listening", zap.String("base", astral.BaseURL()))
		if *chainListen != "" {
			chain, err := sim.NewChain(sim.ChainConfig{Astral: astral})
			if err != nil {
				log.Error("chain simulator not built", zap.Error(err))
				return 1
			}
			if err := chain.Start(*chainListen); err != nil {
				log.Error("chain start failed", zap.Error(err))
				return 1
			}
			defer chain.Close()
			log.Info("chain simulator listening", zap.String("base", chain.BaseURL()),
				zap.String("eas", sim.DefaultEAS), zap.String("base_chain_rpc", chain.URL("base")))
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", zap.String("signal", s.String()))
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parseAmounts reads "A=1,B=2.5" into decimals.
func parseAmounts(s string) (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want NAME=AMOUNT", part)
		}
		d, err := decimal.NewFromString(v)
		if err != nil || d.IsNegative() {
			return nil, fmt.Errorf("%s: %q is not a non-negative decimal", k, v)
		}
		out[k] = d
	}
	return out, nil
}
