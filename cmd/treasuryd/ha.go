package main

import (
	"context"
	"os"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/leader"
	"treasuryd/internal/metrics"
	"treasuryd/internal/operator"
)

// runHA runs the daemon on a PostgreSQL journal (SPEC 11): a standby until
// it holds the leadership lock, then the whole daemon — a fresh fx app whose
// journal begins a new fencing term before any part that acts starts, so
// every program, cap, in-flight withdrawal, unknown accept, the pause flag
// and pending authority changes are restored from the journal before a
// stream opens — until SIGTERM/SIGINT (exit 0) or the loss of leadership,
// after which it stops the app as at SIGTERM and is a standby again.
func runHA(p *config.Policy, up upstream, configPath, apiKey string, log *zap.Logger,
	sig <-chan os.Signal, extra []fx.Option) int {
	dsn, err := p.State.PostgresDSN()
	if err != nil {
		log.Error("no PostgreSQL journal", zap.Error(err))
		return exitUsage
	}
	el := leader.New(dsn, p.HA.Lease, log.Named("leader"))
	defer el.Close()
	holder := journal.HolderName()
	for {
		sb := operator.NewStandby(p.HTTP.Listen, p.HA.Lease, metrics.New(version), log.Named("operator"))
		if err := sb.Start(context.Background()); err != nil {
			log.Error("standby did not start", zap.Error(err))
			return exitRuntime
		}
		log.Info("standby: campaigning for leadership", zap.Duration("lease", p.HA.Lease), zap.String("holder", holder))
		ctx, cancel := context.WithCancel(context.Background())
		won := make(chan error, 1)
		go func() { won <- el.Campaign(ctx) }()
		var s os.Signal
		select {
		case s = <-sig:
			cancel()
			<-won
		case err = <-won:
		}
		cancel()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), p.ShutdownTimeout)
		sb.Stop(stopCtx)
		stopCancel()
		if s != nil {
			log.Info("stopped (standby)", zap.String("signal", s.String()))
			return exitOK
		}
		if err != nil {
			log.Error("campaign failed", zap.Error(err))
			return exitRuntime
		}
		log.Info("leadership acquired: restoring state from the journal")

		watchCtx, stopWatch := context.WithCancel(context.Background())
		lost := make(chan error, 1)
		go func() {
			if err := el.Watch(watchCtx); err != nil {
				lost <- err
			}
		}()
		var j *journal.Journal
		opts := append(append([]fx.Option{}, extra...),
			fx.Supply(journal.DSN(dsn), &journal.Leadership{Holder: holder, Confident: el.Confident, Lease: p.HA.Lease}),
			fx.Populate(&j))
		app := fx.New(appOptions(p, up, configPath, apiKey, log, opts...))
		var fenced <-chan struct{}
		if j != nil {
			fenced = j.Fenced()
		}
		code, stepDown := serve(p, app, log, sig, lost, fenced)
		stopWatch()
		el.Close() // the lock goes with the session, if it was still held
		if !stepDown {
			return code
		}
		log.Warn("stepped down: standby again")
	}
}
