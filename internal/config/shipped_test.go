package config

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestShippedConfigsLoadWithoutProblems(t *testing.T) {
	for _, path := range []string{"../../configs/sandbox.yaml", "../../configs/production.example.yaml"} {
		t.Run(path, func(t *testing.T) {
			if _, err := Load(path); err != nil {
				t.Fatalf("Load(%s):\n%v", path, err)
			}
		})
	}
}

func TestSandboxConfigMeetsTheSandboxPromises(t *testing.T) {
	p, err := Load("../../configs/sandbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sandbox == nil || p.Astra.BaseURL != "" || p.Astra.WSURL != "" {
		t.Fatalf("sandbox block %v, astra %+v: want a sandbox and no desk URLs", p.Sandbox, p.Astra)
	}
	if !p.Compliance.Enabled || p.Compliance.Subject != "0xabcdef1234567890abcdef1234567890abcdef12" {
		t.Errorf("compliance %+v: want enabled for the sandbox subject", p.Compliance)
	}
	// SPEC 5.7: a program whose limit the simulated price crosses ...
	sell := p.Programs[0]
	price := p.Sandbox.Price[sell.Base+"-"+sell.Quote]
	if sell.Side != SideSell || !price.GreaterThan(sell.LimitPrice) {
		t.Errorf("sell-btc limit %s vs sandbox price %s: the price must cross the limit", sell.LimitPrice, price)
	}
	// ... a rule whose high-water mark the starting balance exceeds ...
	rule := p.Rebalance.Rules[0]
	if !p.Sandbox.Balances[rule.Asset].GreaterThan(rule.HighWater) {
		t.Errorf("rule %s high water %s vs balance %s: the first run must sweep", rule.Name, rule.HighWater, p.Sandbox.Balances[rule.Asset])
	}
	// ... and schedules that fire within the first minute.
	if p.Rebalance.Schedule != "@every 5s" || p.Reconcile.Schedule != "@every 10s" {
		t.Errorf("schedules %q %q", p.Rebalance.Schedule, p.Reconcile.Schedule)
	}
	if p.State.Path != "treasuryd-sandbox.db" || p.State.QuoteRetention != time.Hour || p.HTTP.Listen != "127.0.0.1:8080" {
		t.Errorf("state %+v http %+v", p.State, p.HTTP)
	}
	if !p.Sandbox.VolatilityBps.Equal(decimal.NewFromInt(20)) || p.Sandbox.Seed != 42 {
		t.Errorf("sandbox %+v", p.Sandbox)
	}
	key, err := p.APIKey()
	if err != nil || key == "" {
		t.Errorf("APIKey() = %q, %v: a sandbox runs without a configured key", key, err)
	}
}
