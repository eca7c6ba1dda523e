package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// prometheusDeadline bounds the wait for every panel to have data. With a 1s
// scrape interval the slowest series (the first reconciliation, at 10s, then
// two scrapes for increase()) has data well inside it.
const prometheusDeadline = 90 * time.Second

// lookTool returns the path of an outside tool, skipping the test on a
// developer's machine without it and failing it under CI.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI (.ci/run installs it): %v", name, err)
		}
		t.Skipf("%s not installed; skipping (apt-get install -y prometheus)", name)
	}
	return p
}

// panelQuery is one query of one dashboard panel.
type panelQuery struct{ panel, refID, expr string }

// grafanaVars are the Grafana interval variables a panel query may use, with
// the value this test gives them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "5m", "${__range}", "5m",
	// The $program variable at "All" (its allValue).
	"$program", ".*", "${program}", ".*")

func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/k8s/base/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var qs []panelQuery
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, panelQuery{p.Title, tg.RefID, grafanaVars.Replace(tg.Expr)})
		}
	}
	if len(qs) < 20 {
		t.Fatalf("dashboard has only %d queries", len(qs))
	}
	return qs
}

// ruleGroups writes the groups of the PrometheusRule as a plain Prometheus
// rule file and returns its path and the alert names it holds.
func ruleGroups(t *testing.T, dir string) (path string, alerts []string) {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/k8s/base/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []map[string]any `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	for _, g := range rule.Spec.Groups {
		rules, _ := g["rules"].([]any)
		for _, r := range rules {
			if m, ok := r.(map[string]any); ok {
				if a, ok := m["alert"].(string); ok {
					alerts = append(alerts, a)
				}
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("prometheusrule.yaml holds no alert")
	}
	out, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, alerts
}

// promServer is a running prometheus process.
type promServer struct {
	base string
	mu   sync.Mutex
	logs strings.Builder
}

func (p *promServer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

func (p *promServer) Logs() string { p.mu.Lock(); defer p.mu.Unlock(); return p.logs.String() }

var promClient = &http.Client{Timeout: 5 * time.Second}

// api GETs a Prometheus HTTP API path and decodes its data field into v. A
// request Prometheus refuses (a query that does not parse) is returned as
// the error with its message.
func (p *promServer) api(path string, v any) error {
	resp, err := promClient.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

func startPrometheus(t *testing.T, dir, target, rules string) *promServer {
	t.Helper()
	bin := lookTool(t, "prometheus")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: treasuryd
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	p := &promServer{base: "http://" + listen}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+listen,
		"--log.level=warn",
		"--storage.tsdb.retention.time=1h",
		"--web.console.templates="+dir, "--web.console.libraries="+dir, // no /etc/prometheus lookups
	)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", tail(p.Logs(), 40))
		}
	})
	waitFor(t, 30*time.Second, "prometheus /-/ready", func() bool {
		select {
		case <-done:
			t.Fatalf("prometheus exited: %s\n%s", cmd.ProcessState, p.Logs())
		default:
		}
		resp, err := promClient.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// hasData reports whether an instant query returned at least one sample
// with a finite value: a NaN quantile of an empty histogram is not data.
func hasData(data json.RawMessage) (bool, string) {
	var q struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &q); err != nil {
		return false, err.Error()
	}
	finite := func(v []any) bool {
		if len(v) != 2 {
			return false
		}
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	switch q.ResultType {
	case "vector":
		var vec []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(q.Result, &vec); err != nil {
			return false, err.Error()
		}
		for _, s := range vec {
			if finite(s.Value) {
				return true, ""
			}
		}
		if len(vec) == 0 {
			return false, "empty result"
		}
		return false, fmt.Sprintf("%d series, none with a finite value: %s", len(vec), q.Result)
	case "scalar":
		var v []any
		json.Unmarshal(q.Result, &v)
		return finite(v), string(q.Result)
	}
	return false, "result type " + q.ResultType
}

// TestPrometheusScrapesSandboxAndEveryPanelHasData runs a real Prometheus
// against the daemon on the sandbox policy with the PrometheusRule's groups
// loaded: the target is up, every query of every dashboard panel returns
// data, every alert rule evaluates without error, and none fires on a
// healthy sandbox.
func TestPrometheusScrapesSandboxAndEveryPanelHasData(t *testing.T) {
	lookTool(t, "prometheus")
	start := time.Now()
	dir := t.TempDir()
	queries := dashboardQueries(t)
	rules, alerts := ruleGroups(t, dir)

	policy, addr := sandboxPolicy(t, dir)
	startDaemon(t, policy, addr)
	prom := startPrometheus(t, dir, addr, rules)

	deadline := time.Now().Add(prometheusDeadline)
	poll := func(what string, cond func() (bool, string)) {
		t.Helper()
		var why string
		for {
			ok, w := cond()
			if ok {
				return
			}
			why = w
			if time.Now().After(deadline) {
				t.Fatalf("after %s, still waiting for %s: %s", time.Since(start).Round(time.Second), what, why)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	poll("the treasuryd target to be up", func() (bool, string) {
		var targets struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := prom.api("/api/v1/targets", &targets); err != nil {
			return false, err.Error()
		}
		for _, tg := range targets.ActiveTargets {
			if strings.Contains(tg.ScrapeURL, addr) {
				return tg.Health == "up", tg.Health + " " + tg.LastError
			}
		}
		return false, fmt.Sprintf("no target for %s in %+v", addr, targets.ActiveTargets)
	})
	upAt := time.Since(start)

	pending := slices.Clone(queries)
	poll("every dashboard panel to have data", func() (bool, string) {
		var empty []string
		rest := pending[:0]
		for _, q := range pending {
			var data json.RawMessage
			if err := prom.api("/api/v1/query?query="+url.QueryEscape(q.expr), &data); err != nil {
				if strings.Contains(err.Error(), "bad_data") {
					t.Fatalf("panel %q query %s does not parse: %v\n%s", q.panel, q.refID, err, q.expr)
				}
				empty = append(empty, fmt.Sprintf("\n  %q %s: %v", q.panel, q.refID, err))
				rest = append(rest, q)
				continue
			}
			if ok, why := hasData(data); !ok {
				empty = append(empty, fmt.Sprintf("\n  %q %s (%s): %s", q.panel, q.refID, q.expr, why))
				rest = append(rest, q)
			}
		}
		pending = rest
		return len(pending) == 0, strings.Join(empty, "")
	})
	dataAt := time.Since(start)

	type ruleState struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Health    string `json:"health"`
		State     string `json:"state"`
		LastError string `json:"lastError"`
	}
	var loaded map[string]ruleState
	poll("every alert rule to evaluate with health ok", func() (bool, string) {
		var rs struct {
			Groups []struct {
				Rules []ruleState `json:"rules"`
			} `json:"groups"`
		}
		if err := prom.api("/api/v1/rules?type=alert", &rs); err != nil {
			return false, err.Error()
		}
		loaded = map[string]ruleState{}
		for _, g := range rs.Groups {
			for _, r := range g.Rules {
				loaded[r.Name] = r
			}
		}
		var bad []string
		for _, a := range alerts {
			r, ok := loaded[a]
			switch {
			case !ok:
				bad = append(bad, a+": not loaded")
			case r.Health != "ok":
				bad = append(bad, fmt.Sprintf("%s: health %q %s", a, r.Health, r.LastError))
			}
		}
		sort.Strings(bad)
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	if len(loaded) != len(alerts) {
		t.Errorf("prometheus loaded %d alert rules; the PrometheusRule has %d", len(loaded), len(alerts))
	}
	// A healthy sandbox trades, sweeps and reconciles cleanly: no alert
	// fires. (One with a `for` may be pending in its first seconds, e.g. the
	// gate before the first compliance check; pending is not firing.)
	for _, a := range alerts {
		if r := loaded[a]; r.State == "firing" {
			t.Errorf("alert %s fires on a healthy sandbox", a)
		}
	}
	t.Logf("%d queries of the dashboard and %d alert rules checked; target up after %s, every panel with data after %s, total %s",
		len(queries), len(alerts), upAt.Round(time.Millisecond), dataAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
