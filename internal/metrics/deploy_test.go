package metrics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"treasuryd/internal/metrics"
)

// repoRoot is two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// needTool returns the path of an outside tool, skipping the test on a
// developer's machine without it and failing it under CI.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI (.ci/run installs it): %v", name, err)
		}
		t.Skipf("%s not installed; skipping (apt-get install -y prometheus brings promtool)", name)
	}
	return p
}

// registered lists every metric family name the daemon's registry holds.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New("test")
	names := map[string]bool{}
	v := reflect.ValueOf(m).Elem()
	descName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok || v.Field(i).Type() == reflect.TypeOf(m.Registry) {
			continue
		}
		ch := make(chan *prometheus.Desc, 4)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if mm := descName.FindStringSubmatch(d.String()); mm != nil {
				names[mm[1]] = true
			}
		}
	}
	if len(names) < 27 {
		t.Fatalf("only %d metrics described; expected every metric of SPEC 6", len(names))
	}
	return names
}

var metricRef = regexp.MustCompile(`\btreasuryd_[a-z_]+`)

// baseName maps a series name used in a query to its metric family.
func baseName(s string, known map[string]bool) string {
	if known[s] {
		return s
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(s, suf); ok && known[b] {
			return b
		}
	}
	return s
}

func TestRulesAndDashboardNameOnlyRegisteredMetrics(t *testing.T) {
	known := registered(t)
	root := repoRoot(t)
	var exprs []string

	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/k8s/base/prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Alert+": "+r.Expr)
		}
	}

	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err = os.ReadFile(filepath.Join(root, "deploy/k8s/base/dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, p.Title+": "+tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("found only %d queries in rules and dashboard", len(exprs))
	}
	for _, e := range exprs {
		refs := metricRef.FindAllString(e, -1)
		if len(refs) == 0 {
			t.Errorf("query names no treasuryd metric: %s", e)
		}
		for _, ref := range refs {
			if !known[baseName(ref, known)] {
				t.Errorf("query uses %s, which the daemon does not register: %s", ref, e)
			}
		}
	}
}

func TestPrometheusRulesUnitTests(t *testing.T) {
	promtool := needTool(t, "promtool")
	root := repoRoot(t)
	var rule struct {
		Spec struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/k8s/base/prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	groups, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), groups, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(root, "deploy/k8s/base/tests/rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(promtool, "test", "rules", "rules_test.yaml")
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("SUCCESS")) {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
	// Every alert has at least one test case.
	for _, name := range []string{"TreasurydStreamDown", "TreasurydComplianceGateClosed", "TreasurydReconcileBreaks",
		"TreasurydReconcileStale", "TreasurydWithdrawalsUnresolved", "TreasurydAcceptErrors", "TreasurydPausedTooLong",
		"TreasurydTargetMissing", "TreasurydAuthorityChangePending"} {
		if !bytes.Contains(raw, []byte("alert: "+name)) || !bytes.Contains(tests, []byte("alertname: "+name)) {
			t.Errorf("alert %s is missing from the rules or from their tests", name)
		}
	}
}

// renderedObject is the subset of Kubernetes objects the essentials test reads.
type renderedObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`
}

func TestKustomizeBaseRendersWithEssentials(t *testing.T) {
	kubectl := needTool(t, "kubectl")
	root := repoRoot(t)
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(root, "deploy/k8s")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	objs := map[string]renderedObject{}
	for {
		var o renderedObject
		if err := dec.Decode(&o); err != nil {
			break
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	for _, want := range []string{"Namespace/treasuryd", "ServiceAccount/treasuryd",
		"PersistentVolumeClaim/treasuryd-journal", "Deployment/treasuryd", "Service/treasuryd",
		"ServiceMonitor/treasuryd", "PrometheusRule/treasuryd", "NetworkPolicy/treasuryd", "ConfigMap/treasuryd-dashboard",
		"ConfigMap/treasuryd-policy"} {
		if _, ok := objs[want]; !ok {
			t.Errorf("rendered base lacks %s", want)
		}
	}
	if objs["ConfigMap/treasuryd-policy"].Data["policy.yaml"] == "" {
		t.Fatalf("no policy ConfigMap with policy.yaml")
	}
	if objs["ConfigMap/treasuryd-dashboard"].Metadata.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap lacks the grafana_dashboard sidecar label")
	}

	var dep struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Spec struct {
				Grace           int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []struct {
					Liveness struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"livenessProbe"`
					Readiness struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"readinessProbe"`
					Resources struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
					SecurityContext struct {
						ReadOnlyRoot bool `yaml:"readOnlyRootFilesystem"`
						AllowPE      bool `yaml:"allowPrivilegeEscalation"`
					} `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	d := objs["Deployment/treasuryd"]
	if err := d.Spec.Decode(&dep); err != nil {
		t.Fatal(err)
	}
	if dep.Replicas != 1 || dep.Strategy.Type != "Recreate" {
		t.Errorf("deployment: replicas %d strategy %q; want 1 and Recreate", dep.Replicas, dep.Strategy.Type)
	}
	// The policy's shutdown_timeout is 15s; the grace period must exceed it.
	if dep.Template.Spec.Grace <= 15 {
		t.Errorf("terminationGracePeriodSeconds %d is not above the 15s shutdown timeout", dep.Template.Spec.Grace)
	}
	if !dep.Template.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("pod does not run as non-root")
	}
	if len(dep.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(dep.Template.Spec.Containers))
	}
	c := dep.Template.Spec.Containers[0]
	if c.Liveness.HTTPGet.Path != "/healthz" || c.Readiness.HTTPGet.Path != "/readyz" {
		t.Errorf("probes on %q and %q; want /healthz and /readyz", c.Liveness.HTTPGet.Path, c.Readiness.HTTPGet.Path)
	}
	if !c.SecurityContext.ReadOnlyRoot || c.SecurityContext.AllowPE {
		t.Errorf("container: readOnlyRootFilesystem %v allowPrivilegeEscalation %v", c.SecurityContext.ReadOnlyRoot, c.SecurityContext.AllowPE)
	}
	if c.Resources.Limits["memory"] == "" || c.Resources.Limits["cpu"] == "" || c.Resources.Requests["memory"] == "" {
		t.Errorf("container lacks resource requests/limits: %+v", c.Resources)
	}
}
