package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"treasuryd/internal/astra"
	"treasuryd/internal/astral"
	"treasuryd/internal/authority"
	"treasuryd/internal/balances"
	"treasuryd/internal/compliance"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/ledger"
	"treasuryd/internal/metrics"
	"treasuryd/internal/operator"
	"treasuryd/internal/replay"
	"treasuryd/internal/strategy"
	"treasuryd/internal/trade"
	"treasuryd/internal/withdraw"
)

// startTimeout bounds OnStart: opening the journal and binding the listener
// take milliseconds; anything slower is a broken disk or port.
const startTimeout = 30 * time.Second

// appOptions composes the daemon: each package's fx.Module, plus the values
// only the command line knows (the loaded policy, its path, the key) and the
// glue that hands the gate and the kill switch to their consumers as the
// small interfaces those packages declare.
func appOptions(p *config.Policy, up upstream, path, apiKey string, log *zap.Logger, extra ...fx.Option) fx.Option {
	return fx.Options(
		fx.Options(extra...),
		fx.WithLogger(func() fxevent.Logger {
			l := &fxevent.ZapLogger{Logger: log.Named("fx")}
			l.UseLogLevel(zapcore.DebugLevel) // fx's own events are noise at info
			return l
		}),
		fx.StartTimeout(startTimeout),
		fx.StopTimeout(p.ShutdownTimeout),
		fx.Supply(p, log, metrics.BuildVersion(version), config.Path(path), journal.Path(p.State.Path)),
		fx.Provide(
			func(m *metrics.Metrics) astra.Options {
				return astra.Options{BaseURL: up.astraBase, WSURL: up.astraWS, APIKey: apiKey, AccountID: p.AccountID,
					Timeout: p.Astra.RequestTimeout, Observe: astra.ObserveFunc(m.ObserveAPI)}
			},
			func(m *metrics.Metrics) astral.Options {
				return astral.Options{BaseURL: up.astralBase, Timeout: p.Astral.RequestTimeout, Observe: astral.ObserveFunc(m.ObserveAPI)}
			},
			func() compliance.Endpoints { return compliance.Endpoints{Override: up.chainRPC} },
			func() operator.Config {
				return operator.Config{Listen: p.HTTP.Listen, AdminListen: p.HTTP.AdminListen, AdminToken: p.AdminToken()}
			},
			fx.Annotate(func(g compliance.Opener) compliance.Opener { return g },
				fx.As(new(trade.Gate)), fx.As(new(withdraw.Gate))),
			fx.Annotate(func(s *operator.Switch) *operator.Switch { return s },
				fx.As(new(trade.Pauser)), fx.As(new(withdraw.Pauser)), fx.As(new(withdraw.Halter))),
			// The reconciliation's sightings of a withdrawal_mismatch go
			// where the rebalancer's own go.
			func(rb *withdraw.Rebalancer) ledger.MismatchHandler { return rb.Mismatch },
			statusSources,
		),
		metrics.Module,
		// Every bounded series exists at 0 from the first scrape, so rates,
		// increases and alerts over ones that never moved read 0, not nothing.
		fx.Invoke(func(m *metrics.Metrics) {
			l := metrics.Labels{Outcomes: strategy.Outcomes, BreakKinds: ledger.Kinds}
			for _, pr := range p.Programs {
				l.Programs = append(l.Programs, pr.Name)
			}
			for _, r := range p.Rebalance.Rules {
				l.Rules = append(l.Rules, r.Name)
			}
			m.Init(l)
		}),
		config.Module,
		journal.Module,
		// Leadership in the metrics once the journal holds its term (1 on
		// SQLite; on PostgreSQL the term its OnStart began).
		fx.Invoke(func(lc fx.Lifecycle, j *journal.Journal, m *metrics.Metrics) {
			lc.Append(fx.Hook{OnStart: func(context.Context) error {
				m.Leader.Set(1)
				m.LeaderTerm.Set(float64(j.Term()))
				return nil
			}})
		}),
		authority.Module,
		// The keeper first: built here, right after the journal, its OnStart
		// admits the file's policy (SPEC 10) before any part that reads the
		// policy to act starts. Until then Current is config.Unadmitted:
		// nothing payable, the gate closed.
		fx.Invoke(func(*journal.Journal, *authority.Keeper) {}),
		astra.Module,
		astral.Module,
		compliance.Module,
		operator.Module,
		replay.Module,
		balances.Module,
		trade.Module,
		withdraw.Module,
		ledger.Module,
		fx.Invoke(func(*operator.Server, *trade.Runner, *withdraw.Rebalancer, *ledger.Reconciler) {}),
		// Registered last, so it runs first on stop: SIGTERM stops new
		// decisions and withdrawals at once, in parallel, before any other
		// part takes its share of the shutdown timeout (SPEC 7.10). The
		// later Stop calls of their own hooks are no-ops.
		fx.Invoke(func(lc fx.Lifecycle, e *trade.Runner, rb *withdraw.Rebalancer) {
			lc.Append(fx.Hook{OnStop: func(ctx context.Context) error {
				var g errgroup.Group
				g.Go(func() error { return e.Stop(ctx) })
				g.Go(func() error { return rb.Stop(ctx) })
				return g.Wait()
			}})
		}),
	)
}

// statusSources feeds /status and /readyz from the running parts.
func statusSources(j *journal.Journal, e *trade.Runner, book *balances.Book, g *compliance.Gate,
	rb *withdraw.Rebalancer, rec *ledger.Reconciler, k *authority.Keeper) operator.Sources {
	return operator.Sources{
		Programs:          func() any { return e.Status() },
		Compliance:        func() any { return g.Status() },
		Withdrawals:       func() any { return rb.Status() },
		ResolveWithdrawal: rb.Resolve,
		Reconcile:         func() any { return rec.Status() },
		Authority:         func() any { return k.Status() },
		Term:              j.Term,
		Audit: func() any {
			h, err := j.AuditHead(context.Background())
			if err != nil {
				return map[string]string{"error": err.Error()}
			}
			return h
		},
		Ready: map[string]func() bool{
			"journal":  func() bool { _, err := j.Paused(context.Background()); return err == nil },
			"balances": book.Ready,
		},
	}
}

// cmdRun runs the daemon until SIGTERM or SIGINT.
func cmdRun(c *common, _ []string, stdout, stderr io.Writer) int {
	p, ok := c.loadPolicy(stderr)
	if !ok {
		return exitUsage
	}
	log := c.logger(stderr)
	defer log.Sync()
	apiKey, err := p.APIKey()
	if err != nil {
		log.Error("no API key", zap.Error(err))
		return exitUsage
	}
	// Signals are ours from here on: one arriving while the simulators or
	// the app start is acted on as soon as the start returns, and SIGHUP
	// (a reload, while the Reloader runs) never takes the default action of
	// killing the process outside that window.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1) // never read: delivery to a full channel is dropped
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var (
		sb    *sandbox
		extra []fx.Option
		up    = policyUpstream(p)
	)
	if p.Sandbox != nil {
		floor := ledger.Floor(time.Now())
		extra = append(extra, fx.Supply(&floor))
		if sb, err = startSandbox(p, apiKey, log.Named("sandbox")); err != nil {
			log.Error("sandbox did not start", zap.Error(err))
			return exitRuntime
		}
		defer sb.Close()
		up = sb.upstream()
	}
	if p.State.PostgresDSNEnv != "" {
		return runHA(p, up, c.configPath, apiKey, log, sig, extra)
	}
	code, _ := serve(p, fx.New(appOptions(p, up, c.configPath, apiKey, log, extra...)), log, sig, nil, nil)
	return code
}

// serve starts app and runs it until SIGTERM/SIGINT (exitOK once stopped),
// or, on a PostgreSQL journal, until leadership is lost (a value on lost)
// or the journal refused a write as fenced: it then stops the app at once,
// as at SIGTERM (no new decision, in-flight POSTs finished or journaled
// unknown), and returns stepDown=true.
func serve(p *config.Policy, app *fx.App, log *zap.Logger, sig <-chan os.Signal,
	lost <-chan error, fenced <-chan struct{}) (code int, stepDown bool) {
	if err := app.Err(); err != nil {
		log.Error("daemon not built", zap.Error(err))
		return exitRuntime, false
	}
	startCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	err := app.Start(startCtx)
	cancel()
	if err != nil {
		log.Error("daemon did not start", zap.Error(err))
		stopCtx, cancel := context.WithTimeout(context.Background(), p.ShutdownTimeout)
		app.Stop(stopCtx)
		cancel()
		return exitRuntime, false
	}
	log.Info("treasuryd running", zap.String("version", version), zap.String("account", p.AccountID),
		zap.Int("programs", len(p.Programs)), zap.Int("rules", len(p.Rebalance.Rules)), zap.Bool("dry_run", p.DryRun),
		zap.Bool("sandbox", p.Sandbox != nil))

	select {
	case s := <-sig:
		log.Info("stopping", zap.String("signal", s.String()), zap.Duration("timeout", p.ShutdownTimeout))
	case err := <-lost:
		log.Error("leadership lost: stepping down at once", zap.Error(err))
		stepDown = true
	case <-fenced:
		log.Error("a journal write was fenced (another process leads under a newer term): stepping down at once")
		stepDown = true
	}
	// Nine tenths of the timeout for the hooks; the rest for closing the
	// sandbox and exiting, so the process is gone within the timeout.
	stopCtx, cancel := context.WithTimeout(context.Background(), p.ShutdownTimeout*9/10)
	defer cancel()
	if err := app.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("stopped with errors", zap.Error(err))
		if !stepDown {
			return exitRuntime, false
		}
	}
	log.Info("stopped")
	return exitOK, stepDown
}
